// Owns start-up configuration: the environment, validated once, frozen. An invalid value
// throws ConfigError with one line that names the variable; main.ts prints it and exits 1.
import { ConfigError } from '../errors.js'
import { envSchema, type Env } from './schema.js'

export type JwtKeyConfig =
  | { kind: 'secret'; secret: string; algorithms: string[] }
  | { kind: 'public-key'; publicKey: string; algorithms: string[] }
  | { kind: 'jwks'; jwksUrl: string; algorithms: string[] }
  | { kind: 'none' }

export interface Config extends Env {
  isProduction: boolean
  /** True when DATABASE_URL is unset: main.ts starts an embedded PostgreSQL. */
  isEmbeddedDatabase: boolean
  jwt: JwtKeyConfig
  corsOrigins: string[]
  /** The demo worker (with the embedded database) and the live page: on in development by default. */
  workerEnabled: boolean
  livePage: boolean
  logPretty: boolean
}

/** Parses the environment. Empty strings count as unset (docker-compose writes `FOO=`). */
export function loadConfig(source: NodeJS.ProcessEnv = process.env): Readonly<Config> {
  const raw: Record<string, string> = {}
  for (const key of Object.keys(envSchema.shape)) {
    const value = source[key]
    if (value !== undefined && value.trim() !== '') raw[key] = value.trim()
  }
  const parsed = envSchema.safeParse(raw)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!
    const name = String(issue.path[0] ?? 'environment')
    const shown =
      raw[name] !== undefined && !isSecret(name) ? ` (got ${JSON.stringify(raw[name])})` : ''
    throw new ConfigError(`Invalid environment variable ${name}: ${issue.message}${shown}`)
  }
  const env = parsed.data
  const isProduction = env.NODE_ENV === 'production'

  const keys = [
    env.JWT_SECRET && 'JWT_SECRET',
    env.JWT_PUBLIC_KEY && 'JWT_PUBLIC_KEY',
    env.JWKS_URL && 'JWKS_URL',
  ].filter(Boolean)
  if (keys.length > 1) {
    throw new ConfigError(
      `Invalid environment variable ${keys[1]}: set only one of JWT_SECRET, JWT_PUBLIC_KEY, JWKS_URL`,
    )
  }
  const jwt = jwtKeyConfig(env)
  if (jwt.kind !== 'none') {
    // Algorithm confusion: an HMAC algorithm with a public key lets anyone sign with it.
    const hmac = jwt.algorithms.filter((a) => a.startsWith('HS'))
    if (jwt.kind === 'secret' ? hmac.length !== jwt.algorithms.length : hmac.length > 0) {
      throw new ConfigError(
        `Invalid environment variable JWT_ALGORITHMS: ${jwt.kind === 'secret' ? 'JWT_SECRET takes only HS256/HS384/HS512' : 'a public key or JWKS takes no HS* algorithm'}`,
      )
    }
  }
  if (jwt.kind === 'none' && isProduction) {
    throw new ConfigError(
      'Invalid environment variable JWT_SECRET: NODE_ENV=production needs one of JWT_SECRET, JWT_PUBLIC_KEY or JWKS_URL',
    )
  }
  if (env.LONGPOLL_DEFAULT_SECONDS > env.LONGPOLL_MAX_SECONDS) {
    throw new ConfigError(
      `Invalid environment variable LONGPOLL_DEFAULT_SECONDS: must not exceed LONGPOLL_MAX_SECONDS (${env.LONGPOLL_MAX_SECONDS})`,
    )
  }
  if (env.LISTENER_RECONNECT_MIN_MS > env.LISTENER_RECONNECT_MAX_MS) {
    throw new ConfigError(
      'Invalid environment variable LISTENER_RECONNECT_MIN_MS: must not exceed LISTENER_RECONNECT_MAX_MS',
    )
  }
  if ((env.BRIDGE_OUTBOUND || env.BRIDGE_INBOUND) && !env.REDIS_URL) {
    throw new ConfigError(
      `Invalid environment variable ${env.BRIDGE_OUTBOUND ? 'BRIDGE_OUTBOUND' : 'BRIDGE_INBOUND'}: the Redis bridge needs REDIS_URL`,
    )
  }
  if (isProduction && env.WATCH_TOKEN_SECRET === undefined && jwt.kind !== 'secret') {
    throw new ConfigError(
      'Invalid environment variable WATCH_TOKEN_SECRET: NODE_ENV=production needs it to sign watch tokens',
    )
  }

  const config: Config = {
    ...env,
    isProduction,
    isEmbeddedDatabase: env.DATABASE_URL === undefined,
    jwt,
    corsOrigins: env.CORS_ORIGINS.split(',')
      .map((s) => s.trim())
      .filter(Boolean),
    workerEnabled: env.WORKER_ENABLED ?? (!isProduction && env.DATABASE_URL === undefined),
    livePage: env.LIVE_PAGE ?? env.NODE_ENV === 'development',
    logPretty: env.LOG_PRETTY ?? (env.NODE_ENV === 'development' && process.stdout.isTTY === true),
  }
  return Object.freeze(config)
}

function jwtKeyConfig(env: Env): JwtKeyConfig {
  if (env.JWT_SECRET) {
    return { kind: 'secret', secret: env.JWT_SECRET, algorithms: env.JWT_ALGORITHMS ?? ['HS256'] }
  }
  if (env.JWT_PUBLIC_KEY) {
    return {
      kind: 'public-key',
      publicKey: env.JWT_PUBLIC_KEY,
      algorithms: env.JWT_ALGORITHMS ?? ['RS256', 'ES256'],
    }
  }
  if (env.JWKS_URL) {
    return {
      kind: 'jwks',
      jwksUrl: env.JWKS_URL,
      algorithms: env.JWT_ALGORITHMS ?? ['RS256', 'ES256'],
    }
  }
  return { kind: 'none' }
}

function isSecret(name: string): boolean {
  return /SECRET|TOKEN|KEY|PASSWORD|URL/.test(name)
}
