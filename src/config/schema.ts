// The environment, as a zod schema. Every variable is listed here once with its default;
// .env.example mirrors this file (a unit test keeps the two in step).
import proxyAddr from 'proxy-addr'
import { z } from 'zod'
import { COMPAT_SECTIONS, type CompatSection } from '../protocol/compat.js'

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no', 'on', 'off'], {
    error: 'expected true or false',
  })
  .transform((v) => v === 'true' || v === '1' || v === 'yes' || v === 'on')

const int = (min: number, max: number) =>
  z
    .string()
    .regex(/^-?\d+$/, { error: `expected a whole number between ${min} and ${max}` })
    .transform(Number)
    .pipe(
      z
        .number()
        .int()
        .min(min, { error: `must be at least ${min}` })
        .max(max, { error: `must be at most ${max}` }),
    )

const postgresUrl = z.string().refine((v) => /^postgres(ql)?:\/\/.+/.test(v) && URL.canParse(v), {
  error: 'expected a postgres:// or postgresql:// URL',
})

const httpUrl = z.string().refine((v) => /^https?:\/\//.test(v) && URL.canParse(v), {
  error: 'expected an http:// or https:// URL',
})

const redisUrl = z.string().refine((v) => /^rediss?:\/\//.test(v) && URL.canParse(v), {
  error: 'expected a redis:// or rediss:// URL',
})

/**
 * Comma-separated origins as browsers send them (`scheme://host[:port]`, lower case, no path,
 * no default port), or `*` alone (src/http/cors.ts applies them).
 */
const corsOrigins = z.string().superRefine((v, ctx) => {
  const entries = v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
  if (entries.includes('*')) {
    if (entries.length > 1)
      ctx.addIssue({ code: 'custom', message: '`*` allows every origin: list it alone' })
    return
  }
  for (const entry of entries) {
    const url = URL.canParse(entry) ? new URL(entry) : undefined
    if (!url || !/^https?:$/.test(url.protocol)) {
      ctx.addIssue({
        code: 'custom',
        message: `${entry} is not an origin (expected scheme://host[:port], e.g. https://app.example.com)`,
      })
      return
    }
    if (url.origin !== entry) {
      ctx.addIssue({
        code: 'custom',
        message: `${entry} is not an origin as a browser sends it: write ${url.origin} (no path, no default port, lower case)`,
      })
      return
    }
  }
})

const pem = z.string().refine((v) => v.includes('-----BEGIN'), {
  error: 'expected a PEM-encoded public key (-----BEGIN PUBLIC KEY-----…)',
})

/**
 * false | true | a hop count | comma-separated addresses, CIDR subnets and the names
 * loopback, linklocal, uniquelocal (src/http/client-address.ts compiles it).
 */
const trustProxy = z.string().refine(
  (v) => {
    if (/^(true|false|\d+)$/.test(v)) return true
    try {
      proxyAddr.compile(
        v
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean),
      )
      return true
    } catch {
      return false
    }
  },
  {
    error:
      'expected false, true, a hop count, or comma-separated addresses, CIDR subnets, loopback, linklocal or uniquelocal',
  },
)

const claimName = z.string().regex(/^[\w:/.-]+$/, { error: 'expected a claim name' })

/** `all`, or a comma list of COMPAT_SECTIONS (docs/compat.md); empty: no compat route. */
const compatRoutes = z.string().transform((v, ctx) => {
  const names = v
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean)
  if (names.includes('all')) return [...COMPAT_SECTIONS]
  const unknown = names.filter((n) => !(COMPAT_SECTIONS as readonly string[]).includes(n))
  if (unknown.length > 0) {
    ctx.addIssue({
      code: 'custom',
      message: `unknown section ${unknown.map((n) => JSON.stringify(n)).join(', ')}; expected all or a list of ${COMPAT_SECTIONS.join(', ')}`,
    })
    return z.NEVER
  }
  return [...new Set(names)] as CompatSection[]
})

export const JWT_ALGORITHMS = [
  'HS256',
  'HS384',
  'HS512',
  'RS256',
  'RS384',
  'RS512',
  'ES256',
  'ES384',
  'ES512',
  'PS256',
] as const

const algorithms = z
  .string()
  .transform((v) =>
    v
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
  )
  .pipe(
    z
      .array(z.enum(JWT_ALGORITHMS, { error: `expected a list of ${JWT_ALGORITHMS.join(', ')}` }))
      .min(1),
  )

export const envSchema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  HOST: z.string().min(1).default('127.0.0.1'),
  PORT: int(0, 65535).default(3000),
  WEB_CONCURRENCY: z
    .string()
    .regex(/^(auto|[1-9]\d?)$/, { error: 'expected auto or a number of processes from 1 to 99' })
    .default('1'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  LOG_PRETTY: bool.optional(),

  DATABASE_URL: postgresUrl.optional(),
  LISTEN_DATABASE_URL: postgresUrl.optional(),
  DB_POOL_MAX: int(1, 1000).default(10),
  DB_STATEMENT_TIMEOUT_MS: int(0, 3_600_000).default(30_000),
  DB_PREPARED_STATEMENTS: bool.default(true),
  MIGRATE_ON_START: bool.default(true),
  EMBEDDED_PG_DATA_DIR: z.string().min(1).default('.data/postgres'),
  EMBEDDED_PG_PORT: int(1, 65535).default(54329),

  JWT_SECRET: z
    .string()
    .min(32, { error: 'must be at least 32 characters (256 bits) for HS256' })
    .optional(),
  JWT_PUBLIC_KEY: pem.optional(),
  JWKS_URL: httpUrl.optional(),
  JWT_ALGORITHMS: algorithms.optional(),
  JWT_ISSUER: z.string().min(1).optional(),
  JWT_AUDIENCE: z.string().min(1).optional(),
  JWT_CLAIM_SUBJECT: claimName.default('sub'),
  JWT_CLAIM_TENANT: claimName.default('tenant_id'),
  JWT_CLAIM_ROLE: claimName.default('role'),
  WATCH_TOKEN_SECRET: z.string().min(32, { error: 'must be at least 32 characters' }).optional(),
  WATCH_TOKEN_TTL_SECONDS: int(60, 31_536_000).default(24 * 3600),

  BODY_LIMIT_BYTES: int(1024, 64 * 1024 * 1024).default(256 * 1024),
  TRUST_PROXY: trustProxy.default('false'),
  CORS_ORIGINS: corsOrigins.default(''),
  SHUTDOWN_TIMEOUT_MS: int(0, 600_000).default(10_000),

  LONGPOLL_DEFAULT_SECONDS: int(0, 3600).default(30),
  LONGPOLL_MAX_SECONDS: int(0, 3600).default(60),
  SSE_HEARTBEAT_MS: int(1000, 3_600_000).default(15_000),
  SSE_MAX_LIFETIME_MS: int(1000, 86_400_000).default(600_000),
  SSE_RETRY_MS: int(0, 600_000).default(2000),
  STREAM_HIGH_WATER_BYTES: int(1024, 64 * 1024 * 1024).default(64 * 1024),
  JOB_HISTORY_SIZE: int(0, 1000).default(16),
  SWEEP_INTERVAL_MS: int(0, 86_400_000).default(30_000),
  BATCH_WINDOW_MS: int(0, 1000).default(0),
  BATCH_MAX_IDS: int(1, 10_000).default(500),
  LISTENER_RECONNECT_MIN_MS: int(10, 600_000).default(100),
  LISTENER_RECONNECT_MAX_MS: int(10, 600_000).default(2000),
  EVENT_SOURCE: z
    .enum(['notify', 'replication'], { error: 'expected notify or replication' })
    .default('notify'),

  WS_PING_INTERVAL_MS: int(1000, 3_600_000).default(30_000),
  WS_MAX_SUBSCRIPTIONS: int(1, 100_000).default(200),
  WS_MAX_MESSAGE_BYTES: int(128, 16 * 1024 * 1024).default(64 * 1024),
  WS_MAX_BAD_MESSAGES: int(1, 10_000).default(10),
  FEED_RESUME_MAX_JOBS: int(0, 100_000).default(500),

  RATE_LIMIT_WINDOW_MS: int(1000, 86_400_000).default(60_000),
  RATE_LIMIT_PER_USER: int(0, 10_000_000).default(600),
  RATE_LIMIT_PER_TENANT: int(0, 10_000_000).default(6000),
  RATE_LIMIT_PER_IP: int(0, 10_000_000).default(300),
  RATE_LIMIT_PER_WATCH_JOB: int(0, 10_000_000).default(600),
  MAX_STREAMS_PER_USER: int(0, 1_000_000).default(100),
  MAX_STREAMS_PER_TENANT: int(0, 10_000_000).default(10_000),
  MAX_STREAMS_PER_WATCH_JOB: int(0, 1_000_000).default(100),
  LIMITS_STORE: z.enum(['memory', 'redis'], { error: 'expected memory or redis' }).optional(),
  LIMITS_KEY_PREFIX: z
    .string()
    .regex(/^[\w:.{}-]+$/, { error: 'expected letters, digits and _ : . - { }' })
    .default('jobwire:limits:'),
  STREAM_SLOT_TTL_MS: int(1000, 3_600_000).default(30_000),

  REDIS_URL: redisUrl.optional(),
  BRIDGE_OUTBOUND: bool.default(false),
  BRIDGE_INBOUND: bool.default(false),

  WORKER_ENABLED: bool.optional(),
  WORKER_CONCURRENCY: int(1, 1000).default(4),
  LEASE_SECONDS: int(1, 86_400).default(30),
  LEASE_REAPER_INTERVAL_MS: int(0, 3_600_000).default(10_000),

  METRICS_ENABLED: bool.default(true),
  METRICS_TOKEN: z.string().min(16, { error: 'must be at least 16 characters' }).optional(),
  METRICS_TENANT_LABEL: bool.default(false),
  LIVE_PAGE: bool.optional(),

  COMPAT_ROUTES: compatRoutes.default([]),
  COMPAT_ANONYMOUS_READ: bool.default(false),
  LIVE_PAGE_PATH: z
    .string()
    .regex(/^\/[\w\-/]*$/, { error: 'expected a path starting with /' })
    .default('/'),
})

export type Env = z.output<typeof envSchema>
