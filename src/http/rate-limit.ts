// Request rate limits (express-rate-limit): per user and per tenant for requests with a user
// token, per job for requests with a watch token (a share link counts against nothing else,
// so it cannot lock its owner or tenant out), per client IP for requests whose token failed
// (so guessing tokens is throttled too). Over the limit: 429 problem+json with Retry-After
// and RateLimit-* headers. The counters live in this process: N instances allow N× the limit
// in total (docs/decisions.md).
// The client IP is the one src/http/client-address.ts decides under TRUST_PROXY, for
// requests and WebSocket upgrades alike.
import type { IncomingMessage } from 'node:http'
import type { Request, RequestHandler } from 'express'
import { ipKeyGenerator, MemoryStore, rateLimit, type RateLimitInfo } from 'express-rate-limit'
import type { Config } from '../config/index.js'
import { TooManyRequestsError, UnauthorizedError } from '../errors.js'
import type { Authenticator } from './auth.js'
import type { Principal } from '../db/tenant-transaction.js'
import { authenticateRequest, hasPrincipal, principalOf } from './authenticate.js'
import { clientAddressOf, compileTrustProxy } from './client-address.js'

export type RateLimitKind = 'user' | 'tenant' | 'watch' | 'ip'

export interface RateLimitOptions {
  config: Pick<
    Config,
    | 'RATE_LIMIT_WINDOW_MS'
    | 'RATE_LIMIT_PER_USER'
    | 'RATE_LIMIT_PER_TENANT'
    | 'RATE_LIMIT_PER_IP'
    | 'RATE_LIMIT_PER_WATCH_JOB'
    | 'TRUST_PROXY'
  >
  onRejected?(kind: RateLimitKind): void
}

/** Each limiter keeps its own info on the request (the default property is shared). */
function infoOf(req: Request, kind: RateLimitKind): RateLimitInfo | undefined {
  return (req as Request & Record<string, RateLimitInfo | undefined>)[`rateLimit_${kind}`]
}

function limiter(
  kind: RateLimitKind,
  limit: number,
  windowMs: number,
  key: (req: Request) => string,
  skip: (req: Request) => boolean,
  onRejected: ((kind: RateLimitKind) => void) | undefined,
  store: MemoryStore,
): RequestHandler {
  return rateLimit({
    windowMs,
    limit,
    store,
    standardHeaders: 'draft-6',
    legacyHeaders: false,
    requestPropertyName: `rateLimit_${kind}`,
    keyGenerator: key,
    skip,
    handler: (req, _res, next) => {
      onRejected?.(kind)
      const reset = infoOf(req, kind)?.resetTime
      const seconds = reset ? (reset.getTime() - Date.now()) / 1000 : windowMs / 1000
      const who = WHO[kind]
      next(
        new TooManyRequestsError(
          `Too many requests ${who} (limit ${limit} per ${windowMs / 1000} s); retry later.`,
          seconds,
        ),
      )
    },
  })
}

const WHO: Record<RateLimitKind, string> = {
  ip: 'from your address',
  user: 'for your user',
  tenant: 'for your tenant',
  watch: 'for this job through watch tokens',
}

export interface RateLimits {
  /**
   * Authentication and rate limiting for every /v1 request, in order: authenticate (a
   * failure is held back), the per-IP limit for failed authentications, then the failure
   * itself, then the per-user and per-tenant limits. A limit of 0 disables it.
   */
  middleware: RequestHandler[]
  /**
   * The same counters for a WebSocket upgrade, which never reaches express: a failed
   * authentication counts against the client address, a user's upgrade against its user
   * and tenant. Throws TooManyRequestsError over a limit. `client` is the upgrade request
   * (its client address is decided under TRUST_PROXY, as for express), or an address the
   * caller decided already.
   */
  checkUpgrade(
    principal: Principal | undefined,
    client: IncomingMessage | string | undefined,
  ): Promise<void>
  /**
   * Work that costs what `requests` requests cost (a WebSocket subscribe; the jobs of a
   * `/v1/events?jobs=` stream beyond its own request, see subscriptionCost()): counted
   * against the caller's limits. Throws TooManyRequestsError.
   */
  charge(principal: Principal, requests: number): Promise<void>
}

export function createRateLimits(auth: Authenticator, options: RateLimitOptions): RateLimits {
  const { config, onRejected } = options
  const windowMs = config.RATE_LIMIT_WINDOW_MS
  const stores = {
    ip: new MemoryStore(),
    user: new MemoryStore(),
    tenant: new MemoryStore(),
    watch: new MemoryStore(),
  }
  const limits = {
    ip: config.RATE_LIMIT_PER_IP,
    user: config.RATE_LIMIT_PER_USER,
    tenant: config.RATE_LIMIT_PER_TENANT,
    watch: config.RATE_LIMIT_PER_WATCH_JOB,
  }
  const trustProxy = compileTrustProxy(config.TRUST_PROXY)
  const ipKey = (client: IncomingMessage | string | undefined) =>
    ipKeyGenerator(
      (typeof client === 'object' ? clientAddressOf(client, trustProxy) : client) ?? 'unknown',
    )
  const userKey = (p: Principal) => `u:${p.tenantId}:${p.userId}`
  const tenantKey = (p: Principal) => `t:${p.tenantId}`
  const watchKey = (p: Principal) => `w:${p.jobId}`
  const isWatch = (req: Request) => principalOf(req).jobId !== undefined
  const authFailures = new WeakMap<Request, UnauthorizedError>()
  const chain: RequestHandler[] = [
    async (req, _res, next) => {
      try {
        await authenticateRequest(auth, req)
      } catch (error) {
        if (!(error instanceof UnauthorizedError)) throw error
        authFailures.set(req, error)
      }
      next()
    },
  ]
  if (config.RATE_LIMIT_PER_IP > 0) {
    chain.push(
      limiter(
        'ip',
        config.RATE_LIMIT_PER_IP,
        windowMs,
        (req) => ipKey(req),
        (req) => hasPrincipal(req),
        onRejected,
        stores.ip,
      ),
    )
  }
  chain.push((req, _res, next) => next(authFailures.get(req)))
  if (config.RATE_LIMIT_PER_USER > 0) {
    chain.push(
      limiter(
        'user',
        config.RATE_LIMIT_PER_USER,
        windowMs,
        (req) => userKey(principalOf(req)),
        isWatch,
        onRejected,
        stores.user,
      ),
    )
  }
  if (config.RATE_LIMIT_PER_TENANT > 0) {
    chain.push(
      limiter(
        'tenant',
        config.RATE_LIMIT_PER_TENANT,
        windowMs,
        (req) => tenantKey(principalOf(req)),
        isWatch,
        onRejected,
        stores.tenant,
      ),
    )
  }
  if (config.RATE_LIMIT_PER_WATCH_JOB > 0) {
    chain.push(
      limiter(
        'watch',
        config.RATE_LIMIT_PER_WATCH_JOB,
        windowMs,
        (req) => watchKey(principalOf(req)),
        (req) => !isWatch(req),
        onRejected,
        stores.watch,
      ),
    )
  }
  if (config.RATE_LIMIT_PER_USER > 0 && config.RATE_LIMIT_PER_TENANT > 0) {
    // Both limiters write RateLimit-* and the tenant's, written last, wins. A client must
    // see the limit it will hit first: the one with the fewest requests left.
    chain.push((req, res, next) => {
      const user = infoOf(req, 'user')
      const tenant = infoOf(req, 'tenant')
      if (user && tenant && user.remaining < tenant.remaining) {
        const resetSeconds = user.resetTime
          ? Math.max(0, Math.ceil((user.resetTime.getTime() - Date.now()) / 1000))
          : Math.ceil(windowMs / 1000)
        res.setHeader('RateLimit-Policy', `${user.limit};w=${Math.ceil(windowMs / 1000)}`)
        res.setHeader('RateLimit-Limit', String(user.limit))
        res.setHeader('RateLimit-Remaining', String(user.remaining))
        res.setHeader('RateLimit-Reset', String(resetSeconds))
      }
      next()
    })
  }

  const hit = async (kind: RateLimitKind, key: string, requests = 1) => {
    if (limits[kind] <= 0 || requests <= 0) return
    let counted = await stores[kind].increment(key)
    for (let i = 1; i < requests; i++) counted = await stores[kind].increment(key)
    const { totalHits, resetTime } = counted
    if (totalHits <= limits[kind]) return
    onRejected?.(kind)
    const seconds = resetTime ? (resetTime.getTime() - Date.now()) / 1000 : windowMs / 1000
    throw new TooManyRequestsError(
      `Too many requests ${WHO[kind]} (limit ${limits[kind]} per ${windowMs / 1000} s); retry later.`,
      seconds,
    )
  }
  const hitPrincipal = async (principal: Principal, requests = 1) => {
    if (principal.jobId !== undefined) return hit('watch', watchKey(principal), requests)
    await hit('user', userKey(principal), requests)
    await hit('tenant', tenantKey(principal), requests)
  }
  return {
    middleware: chain,
    async checkUpgrade(principal, client) {
      if (!principal) return hit('ip', ipKey(client))
      await hitPrincipal(principal)
    },
    charge: hitPrincipal,
  }
}
