// Owns authentication: user JWTs through passport-jwt (HS*, RS*/ES* public key or JWKS,
// explicit algorithm allow-list, issuer and audience) and jobwire's own watch tokens
// (HS256 share links scoped to one job, read-only). Keys become KeyObjects once, at
// start-up: jsonwebtoken given a string secret tries it as a PEM on every call (bench/TARGETS.md, "Floors measured on this machine").
import { createPublicKey, createSecretKey, hkdfSync, type KeyObject } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import jwt from 'jsonwebtoken'
import passport from 'passport'
import { Strategy as JwtStrategy } from 'passport-jwt'
import jwksRsa from 'jwks-rsa'
import { z } from 'zod'
import type { Config, JwtKeyConfig } from '../config/index.js'
import type { Principal } from '../db/tenant-transaction.js'
import { ForbiddenError, UnauthorizedError } from '../errors.js'
import { QUERY } from '../protocol/http.js'
import { VerifiedTokenCache } from './token-cache.js'

const WATCH_TOKEN_KID = 'jobwire-watch'
const WATCH_TOKEN_AUDIENCE = 'jobwire:watch'

export interface AuthOptions {
  config: Pick<
    Config,
    | 'jwt'
    | 'JWT_ISSUER'
    | 'JWT_AUDIENCE'
    | 'JWT_CLAIM_SUBJECT'
    | 'JWT_CLAIM_TENANT'
    | 'JWT_CLAIM_ROLE'
    | 'WATCH_TOKEN_TTL_SECONDS'
  >
  /** HS256 key for watch tokens. */
  watchTokenSecret: string
}

/** Where a route accepts a token from. Streams also take `?token=` (EventSource sends no headers). */
export type TokenSource = 'header' | 'header-or-query'

export interface Authenticator {
  /** Resolves the principal or throws UnauthorizedError. */
  authenticate(req: IncomingMessage, source: TokenSource): Promise<Principal>
  issueWatchToken(principal: Principal, jobId: string): string
}

const uuidLike = z.guid()
// eslint-disable-next-line no-control-regex
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f]/

export function createAuthenticator(options: AuthOptions): Authenticator {
  const { config } = options
  const watchKey = createSecretKey(Buffer.from(options.watchTokenSecret, 'utf8'))
  const strategyName = 'jobwire-jwt'
  const verified = new VerifiedTokenCache()
  const instance = new passport.Passport()

  instance.use(
    strategyName,
    new JwtStrategy(
      {
        jwtFromRequest: (req: IncomingMessage) => (req as AuthRequest).jobwireToken ?? null,
        secretOrKeyProvider: keyProvider(config.jwt),
        algorithms:
          config.jwt.kind === 'none' ? ['HS256'] : (config.jwt.algorithms as jwt.Algorithm[]),
        issuer: config.JWT_ISSUER,
        audience: config.JWT_AUDIENCE,
        jsonWebTokenOptions: { clockTolerance: 5 },
      },
      (
        payload: Record<string, unknown>,
        done: (err: unknown, user?: Principal | false, info?: unknown) => void,
      ) => {
        const principal = principalFromClaims(payload, config)
        if (typeof principal === 'string') done(null, false, { message: principal })
        else done(null, principal)
      },
    ),
  )

  function verifyUserToken(req: AuthRequest): Promise<Principal> {
    return new Promise((resolve, reject) => {
      const handler = instance.authenticate(
        strategyName,
        { session: false },
        (err: unknown, user: Principal | false, info: unknown) => {
          if (err) return reject(new UnauthorizedError(describeJwtFailure(err)))
          if (!user) return reject(new UnauthorizedError(describeJwtFailure(info)))
          resolve(user)
        },
      ) as (req: unknown, res: unknown, next: (err?: unknown) => void) => void
      handler(req, {}, (err) => reject(err ?? new UnauthorizedError('Invalid token.')))
    })
  }

  return {
    async authenticate(req, source) {
      const token = extractToken(req, source)
      if (token === undefined) {
        throw new UnauthorizedError(
          source === 'header'
            ? 'Send a token in the Authorization header: "Authorization: Bearer <token>".'
            : 'Send a token in the Authorization header or the ?token= query parameter.',
        )
      }
      const cached = verified.get(token)
      if (cached) return cached
      const header = decodeHeader(token)
      let principal: Principal
      if (header?.kid === WATCH_TOKEN_KID) {
        principal = verifyWatchToken(token, watchKey)
      } else {
        const authReq = req as AuthRequest
        authReq.jobwireToken = token
        try {
          principal = await verifyUserToken(authReq)
        } finally {
          delete authReq.jobwireToken
        }
      }
      const exp = (jwt.decode(token) as { exp?: unknown } | null)?.exp
      verified.set(token, principal, typeof exp === 'number' ? exp : undefined)
      return principal
    },

    issueWatchToken(principal, jobId) {
      return jwt.sign({ tid: principal.tenantId, job: jobId }, watchKey, {
        algorithm: 'HS256',
        subject: principal.userId,
        audience: WATCH_TOKEN_AUDIENCE,
        expiresIn: config.WATCH_TOKEN_TTL_SECONDS,
        keyid: WATCH_TOKEN_KID,
      })
    },
  }
}

type AuthRequest = IncomingMessage & { jobwireToken?: string }

const BEARER = /^Bearer[ \t]+([A-Za-z0-9\-_.~+/]+=*)[ \t]*$/i

function extractToken(req: IncomingMessage, source: TokenSource): string | undefined {
  const header = req.headers.authorization
  if (header !== undefined && header !== '') {
    const match = BEARER.exec(header)
    if (!match) throw new UnauthorizedError('The Authorization header must be "Bearer <token>".')
    return match[1]
  }
  if (source === 'header-or-query' && req.url !== undefined) {
    const query = req.url.indexOf('?')
    if (query >= 0) {
      const values = new URLSearchParams(req.url.slice(query + 1)).getAll(QUERY.token)
      if (values.length > 1) throw new UnauthorizedError('Send one ?token= only.')
      if (values[0]) return values[0]
    }
  }
  return undefined
}

/** True when the request sends a token where `source` looks (valid or not). */
export function carriesToken(req: IncomingMessage, source: TokenSource): boolean {
  if (req.headers.authorization !== undefined && req.headers.authorization !== '') return true
  if (source !== 'header-or-query' || req.url === undefined) return false
  const query = req.url.indexOf('?')
  return query >= 0 && new URLSearchParams(req.url.slice(query + 1)).has(QUERY.token)
}

function decodeHeader(token: string): { kid?: string } | undefined {
  try {
    const decoded = jwt.decode(token, { complete: true })
    return decoded?.header
  } catch {
    return undefined
  }
}

function verifyWatchToken(token: string, key: KeyObject): Principal {
  let payload: jwt.JwtPayload
  try {
    payload = jwt.verify(token, key, {
      algorithms: ['HS256'],
      audience: WATCH_TOKEN_AUDIENCE,
      clockTolerance: 5,
    }) as jwt.JwtPayload
  } catch (error) {
    throw new UnauthorizedError(describeJwtFailure(error))
  }
  const tenantId = uuidLike.safeParse(payload.tid)
  const jobId = uuidLike.safeParse(payload.job)
  if (!tenantId.success || !jobId.success || typeof payload.sub !== 'string') {
    throw new UnauthorizedError('The watch token is malformed.')
  }
  return { tenantId: tenantId.data, userId: payload.sub, role: 'member', jobId: jobId.data }
}

function keyProvider(
  keys: Config['jwt'],
): (req: unknown, rawJwt: string, done: (err: unknown, key?: string | Buffer) => void) => void {
  switch (keys.kind) {
    case 'secret': {
      const key = createSecretKey(Buffer.from(keys.secret, 'utf8'))
      return (_req, _raw, done) => done(null, key as unknown as Buffer)
    }
    case 'public-key': {
      const key = createPublicKey(keys.publicKey)
      return (_req, _raw, done) => done(null, key as unknown as Buffer)
    }
    case 'jwks': {
      const client = jwksRsa({
        jwksUri: keys.jwksUrl,
        cache: true,
        rateLimit: true,
        jwksRequestsPerMinute: 10,
      })
      const keyObjects = new Map<string, KeyObject>()
      return (_req, raw, done) => {
        const kid = decodeHeader(raw)?.kid
        const cached = kid === undefined ? undefined : keyObjects.get(kid)
        if (cached) return done(null, cached as unknown as Buffer)
        client.getSigningKey(kid).then(
          (signingKey) => {
            const key = createPublicKey(signingKey.getPublicKey())
            if (kid !== undefined) keyObjects.set(kid, key)
            done(null, key as unknown as Buffer)
          },
          (error: unknown) =>
            done(new Error(`no signing key for kid ${String(kid)}: ${String(error)}`)),
        )
      }
    }
    case 'none':
      return (_req, _raw, done) => done(new Error('no JWT key is configured'))
  }
}

/** The keys the authenticator runs with, once the configuration is resolved. */
export interface AuthKeys {
  jwt: Exclude<JwtKeyConfig, { kind: 'none' }>
  watchTokenSecret: string
  /** True when no JWT key is configured and a development key was generated (never in production). */
  isDevelopmentKey: boolean
}

/**
 * The configured JWT key, or (development only) the generated one; the watch-token key is
 * WATCH_TOKEN_SECRET, else derived from JWT_SECRET with HKDF, else the generated one.
 * `developmentSecrets` loads (or creates) the generated keys; it is called only when needed.
 */
export function resolveAuthKeys(
  config: Pick<Config, 'jwt' | 'WATCH_TOKEN_SECRET'>,
  developmentSecrets: () => { jwtSecret: string; watchTokenSecret: string },
): AuthKeys {
  const jwtKey =
    config.jwt.kind === 'none'
      ? { kind: 'secret' as const, secret: developmentSecrets().jwtSecret, algorithms: ['HS256'] }
      : config.jwt
  const watchTokenSecret =
    config.WATCH_TOKEN_SECRET ??
    (jwtKey.kind === 'secret'
      ? deriveWatchSecret(jwtKey.secret)
      : developmentSecrets().watchTokenSecret)
  return { jwt: jwtKey, watchTokenSecret, isDevelopmentKey: config.jwt.kind === 'none' }
}

/** Watch tokens get their own key, derived from JWT_SECRET when none is configured. */
function deriveWatchSecret(jwtSecret: string): string {
  return Buffer.from(hkdfSync('sha256', jwtSecret, 'jobwire', 'watch-token-v1', 32)).toString(
    'base64url',
  )
}

/** Maps (configurable) claim names to a principal, or returns why it cannot. */
export function principalFromClaims(
  payload: Record<string, unknown>,
  names: Pick<Config, 'JWT_CLAIM_SUBJECT' | 'JWT_CLAIM_TENANT' | 'JWT_CLAIM_ROLE'>,
): Principal | string {
  const sub = payload[names.JWT_CLAIM_SUBJECT]
  const tenant = payload[names.JWT_CLAIM_TENANT]
  const role = payload[names.JWT_CLAIM_ROLE]
  // owner_id is text: PostgreSQL cannot store NUL, and no IdP puts control characters in a sub.
  if (typeof sub !== 'string' || sub === '' || sub.length > 256 || CONTROL_CHARACTER.test(sub)) {
    return `The token needs a "${names.JWT_CLAIM_SUBJECT}" claim (1–256 characters, no control characters).`
  }
  if (!uuidLike.safeParse(tenant).success) {
    return `The token needs a "${names.JWT_CLAIM_TENANT}" claim holding a UUID.`
  }
  if (role !== 'admin' && role !== 'member') {
    return `The token needs a "${names.JWT_CLAIM_ROLE}" claim of "admin" or "member".`
  }
  return { userId: sub, tenantId: (tenant as string).toLowerCase(), role }
}

function describeJwtFailure(info: unknown): string {
  if (info instanceof jwt.TokenExpiredError) return 'The token has expired.'
  if (info instanceof jwt.NotBeforeError) return 'The token is not valid yet.'
  if (info instanceof jwt.JsonWebTokenError) {
    if (/audience/.test(info.message)) return 'The token was issued for another audience.'
    if (/issuer/.test(info.message)) return 'The token was issued by another issuer.'
    if (/signature/.test(info.message)) return 'The token signature is invalid.'
    if (/algorithm/.test(info.message))
      return 'The token is signed with an algorithm that is not allowed.'
    return 'The token is malformed.'
  }
  if (info instanceof Error && /signing key|no JWT key/.test(info.message))
    return 'No key can verify this token.'
  if (
    typeof info === 'object' &&
    info !== null &&
    'message' in info &&
    typeof info.message === 'string'
  ) {
    if (info.message === 'No auth token') return 'A token is required.'
    return info.message
  }
  return 'The token is invalid.'
}

/** A watch token opens exactly its job, for reading; anything else is 403. */
export function assertCanRead(principal: Principal, jobId: string): void {
  if (principal.jobId !== undefined && principal.jobId !== jobId.toLowerCase()) {
    throw new ForbiddenError('This watch token opens one job only.')
  }
}

export function assertUserToken(principal: Principal, action: string): void {
  if (principal.jobId !== undefined) {
    throw new ForbiddenError(`A watch token is read-only and opens one job: it cannot ${action}.`)
  }
}
