// Owns start-up configuration: the environment, validated once, frozen. An invalid value
// throws ConfigError with one line that names the variable; main.ts prints it and exits 1.
// Each entry point reads only what it uses: loadConfig() for the service and the worker,
// loadDatabaseConfig() for the CLIs that only reach the database, `npm run migrate` and
// `npm run reset` (no JWT key: they sign and verify nothing).
import { availableParallelism } from 'node:os'
import type { z } from 'zod'
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
  /** Where request limits and stream caps are counted: LIMITS_STORE, else redis with REDIS_URL. */
  limitsStore: 'memory' | 'redis'
  corsOrigins: string[]
  /** The demo worker (with the embedded database) and the live page: on in development by default. */
  workerEnabled: boolean
  livePage: boolean
  logPretty: boolean
  /** HTTP processes (WEB_CONCURRENCY): 1 runs in this process, more a cluster (src/cluster/). */
  webConcurrency: number
}

/** Parses the environment. Empty strings count as unset (docker-compose writes `FOO=`). */
export function loadConfig(source: NodeJS.ProcessEnv = process.env): Readonly<Config> {
  const env = parseEnv(envSchema, source)
  const isProduction = env.NODE_ENV === 'production'
  requireDatabaseInProduction(env)

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
  if (env.LIMITS_STORE === 'redis' && !env.REDIS_URL) {
    throw new ConfigError(
      'Invalid environment variable LIMITS_STORE: redis needs REDIS_URL (or leave it unset)',
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
    limitsStore: env.LIMITS_STORE ?? (env.REDIS_URL ? 'redis' : 'memory'),
    corsOrigins: env.CORS_ORIGINS.split(',')
      .map((s) => s.trim())
      .filter(Boolean),
    workerEnabled: env.WORKER_ENABLED ?? (!isProduction && env.DATABASE_URL === undefined),
    livePage: env.LIVE_PAGE ?? env.NODE_ENV === 'development',
    logPretty: env.LOG_PRETTY ?? (env.NODE_ENV === 'development' && process.stdout.isTTY === true),
    webConcurrency:
      env.WEB_CONCURRENCY === 'auto' ? availableParallelism() : Number(env.WEB_CONCURRENCY),
  }
  return Object.freeze(config)
}

/** What the database-only CLIs read: the database (or the embedded one's folder and port) and logging. */
export type DatabaseConfig = Pick<
  Env,
  'NODE_ENV' | 'LOG_LEVEL' | 'DATABASE_URL' | 'EMBEDDED_PG_DATA_DIR' | 'EMBEDDED_PG_PORT'
> & { logPretty: boolean }

const databaseSchema = envSchema.pick({
  NODE_ENV: true,
  LOG_LEVEL: true,
  LOG_PRETTY: true,
  DATABASE_URL: true,
  EMBEDDED_PG_DATA_DIR: true,
  EMBEDDED_PG_PORT: true,
})

/** The database-only CLIs' configuration: invalid or missing values of other variables do not matter. */
export function loadDatabaseConfig(
  source: NodeJS.ProcessEnv = process.env,
): Readonly<DatabaseConfig> {
  const env = parseEnv(databaseSchema, source)
  requireDatabaseInProduction(env)
  return Object.freeze({
    NODE_ENV: env.NODE_ENV,
    LOG_LEVEL: env.LOG_LEVEL,
    DATABASE_URL: env.DATABASE_URL,
    EMBEDDED_PG_DATA_DIR: env.EMBEDDED_PG_DATA_DIR,
    EMBEDDED_PG_PORT: env.EMBEDDED_PG_PORT,
    logPretty: env.LOG_PRETTY ?? (env.NODE_ENV === 'development' && process.stdout.isTTY === true),
  })
}

/** Reads the schema's variables from `source`; the first invalid one throws, named. */
function parseEnv<S extends z.ZodObject>(schema: S, source: NodeJS.ProcessEnv): z.output<S> {
  const raw: Record<string, string> = {}
  for (const key of Object.keys(schema.shape)) {
    const value = source[key]
    if (value !== undefined && value.trim() !== '') raw[key] = value.trim()
  }
  const parsed = schema.safeParse(raw)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!
    const name = String(issue.path[0] ?? 'environment')
    const shown =
      raw[name] !== undefined && !isSecret(name) ? ` (got ${JSON.stringify(raw[name])})` : ''
    throw new ConfigError(`Invalid environment variable ${name}: ${issue.message}${shown}`)
  }
  return parsed.data
}

/**
 * The embedded PostgreSQL is a development convenience: a production install
 * (`npm ci --omit=dev --omit=optional`, the Dockerfile's) has no binaries for it, and a
 * production database in a local folder would be a mistake anyway. Checked first, so the
 * message names DATABASE_URL before anything tries to load the embedded package.
 */
function requireDatabaseInProduction(env: Pick<Env, 'NODE_ENV' | 'DATABASE_URL'>): void {
  if (env.NODE_ENV === 'production' && env.DATABASE_URL === undefined) {
    throw new ConfigError(
      'Invalid environment variable DATABASE_URL: NODE_ENV=production needs it (the embedded PostgreSQL is for development only)',
    )
  }
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
