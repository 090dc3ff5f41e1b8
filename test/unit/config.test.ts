// loadConfig(): the environment, validated once. Every refusal must name the variable, in one
// line, and never print a secret.
import { availableParallelism } from 'node:os'
import { loadConfig, loadDatabaseConfig } from '../../src/config/index.js'
import { ConfigError } from '../../src/errors.js'

const SECRET = 'unit-test-secret-unit-test-secret-0123456789'

function refusal(env: Record<string, string | undefined>): ConfigError {
  try {
    loadConfig(env)
  } catch (error) {
    if (error instanceof ConfigError) return error
    throw error
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(env)}`)
}

describe('loadConfig defaults', () => {
  it('starts on the embedded database in development with every default filled in', () => {
    const config = loadConfig({})
    expect(config).toMatchObject({
      NODE_ENV: 'development',
      HOST: '127.0.0.1',
      PORT: 3000,
      LOG_LEVEL: 'info',
      MIGRATE_ON_START: true,
      DB_POOL_MAX: 10,
      EVENT_SOURCE: 'notify',
      LONGPOLL_DEFAULT_SECONDS: 30,
      LONGPOLL_MAX_SECONDS: 60,
      JWT_CLAIM_SUBJECT: 'sub',
      JWT_CLAIM_TENANT: 'tenant_id',
      JWT_CLAIM_ROLE: 'role',
      isProduction: false,
      isEmbeddedDatabase: true,
      jwt: { kind: 'none' },
      corsOrigins: [],
    })
    expect(config.DATABASE_URL).toBeUndefined()
  })

  it('trusts no proxy by default, and accepts each documented TRUST_PROXY form', () => {
    expect(loadConfig({}).TRUST_PROXY).toBe('false')
    for (const value of ['true', 'false', '2', 'loopback', '10.0.0.0/8, fd00::/8', '192.0.2.7'])
      expect(loadConfig({ TRUST_PROXY: value }).TRUST_PROXY).toBe(value)
  })

  it('returns a frozen object', () => {
    const config = loadConfig({})
    expect(Object.isFrozen(config)).toBe(true)
  })

  it('reads what is set, trimmed, and converts numbers and booleans', () => {
    const config = loadConfig({
      PORT: ' 8080 ',
      DATABASE_URL: 'postgres://u:p@db:5432/jobs',
      MIGRATE_ON_START: 'false',
      METRICS_ENABLED: '0',
      BRIDGE_OUTBOUND: 'no',
      LIVE_PAGE: 'on',
      CORS_ORIGINS: 'https://a.example, https://b.example,',
    })
    expect(config).toMatchObject({
      PORT: 8080,
      MIGRATE_ON_START: false,
      METRICS_ENABLED: false,
      BRIDGE_OUTBOUND: false,
      LIVE_PAGE: true,
      isEmbeddedDatabase: false,
      corsOrigins: ['https://a.example', 'https://b.example'],
    })
  })

  it('counts empty and blank strings as unset, as docker-compose writes FOO=', () => {
    const config = loadConfig({
      PORT: '',
      DATABASE_URL: '',
      JWT_SECRET: '   ',
      LOG_LEVEL: '',
      MIGRATE_ON_START: '',
    })
    expect(config).toMatchObject({
      PORT: 3000,
      isEmbeddedDatabase: true,
      jwt: { kind: 'none' },
      LOG_LEVEL: 'info',
      MIGRATE_ON_START: true,
    })
  })

  it('picks the key kind and the default algorithms from the variable that is set', () => {
    expect(loadConfig({ JWT_SECRET: SECRET }).jwt).toEqual({
      kind: 'secret',
      secret: SECRET,
      algorithms: ['HS256'],
    })
    const pem = '-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----'
    expect(loadConfig({ JWT_PUBLIC_KEY: pem }).jwt).toEqual({
      kind: 'public-key',
      publicKey: pem,
      algorithms: ['RS256', 'ES256'],
    })
    expect(loadConfig({ JWKS_URL: 'https://idp.example/jwks.json' }).jwt).toEqual({
      kind: 'jwks',
      jwksUrl: 'https://idp.example/jwks.json',
      algorithms: ['RS256', 'ES256'],
    })
    expect(loadConfig({ JWT_SECRET: SECRET, JWT_ALGORITHMS: 'HS512, HS256' }).jwt).toMatchObject({
      algorithms: ['HS512', 'HS256'],
    })
  })

  it('accepts namespaced claim names', () => {
    const config = loadConfig({ JWT_CLAIM_TENANT: 'https://example.com/tenant' })
    expect(config.JWT_CLAIM_TENANT).toBe('https://example.com/tenant')
  })
})

describe('loadConfig refuses invalid values, naming the variable', () => {
  it.each([
    ['PORT', 'abc'],
    ['PORT', '65536'],
    ['PORT', '-1'],
    ['PORT', '80.5'],
    ['LOG_LEVEL', 'verbose'],
    ['NODE_ENV', 'staging'],
    ['DATABASE_URL', 'mysql://localhost/db'],
    ['DATABASE_URL', 'not a url'],
    ['LISTEN_DATABASE_URL', 'http://localhost'],
    ['JWKS_URL', 'ftp://idp.example/jwks'],
    ['JWT_PUBLIC_KEY', 'not a pem'],
    ['JWT_ALGORITHMS', 'none'],
    ['JWT_ALGORITHMS', ','],
    ['JWT_CLAIM_TENANT', 'tenant id'],
    ['MIGRATE_ON_START', 'maybe'],
    ['LOG_PRETTY', 'yes please'],
    ['WORKER_ENABLED', '2'],
    ['DB_POOL_MAX', '0'],
    ['REDIS_URL', 'localhost:6379'],
    ['LIMITS_STORE', 'postgres'],
    ['LIMITS_KEY_PREFIX', 'my limits'],
    ['STREAM_SLOT_TTL_MS', '500'],
    ['LIVE_PAGE_PATH', 'live'],
    ['BODY_LIMIT_BYTES', '10'],
    ['TRUST_PROXY', 'nginx'],
    ['TRUST_PROXY', '10.0.0.0/33'],
  ])('refuses %s=%j with one line that names it', (name, value) => {
    const error = refusal({ [name]: value })
    expect(error.message).toMatch(new RegExp(`^Invalid environment variable ${name}: `))
    expect(error.message).not.toContain('\n')
  })

  it('refuses CORS_ORIGINS entries that are not origins as a browser sends them', () => {
    for (const [value, says] of [
      ['https://app.example/', 'write https://app.example'],
      ['https://app.example/path', 'write https://app.example'],
      ['https://App.example', 'write https://app.example'],
      ['https://app.example:443', 'write https://app.example'],
      ['app.example', 'is not an origin'],
      ['ftp://app.example', 'is not an origin'],
      ['https://a.example,*', 'list it alone'],
    ]) {
      const error = refusal({ CORS_ORIGINS: value })
      expect(error.message).toMatch(/^Invalid environment variable CORS_ORIGINS: /)
      expect(error.message).toContain(says)
    }
    expect(loadConfig({ CORS_ORIGINS: '*' }).corsOrigins).toEqual(['*'])
    expect(loadConfig({ CORS_ORIGINS: 'http://localhost:5173' }).corsOrigins).toEqual([
      'http://localhost:5173',
    ])
  })

  it('shows the offending value for plain settings', () => {
    expect(refusal({ PORT: 'abc' }).message).toContain('"abc"')
  })

  it('refuses a JWT_SECRET shorter than 32 characters without printing it', () => {
    const short = 'short-secret-123'
    const error = refusal({ JWT_SECRET: short })
    expect(error.message).toMatch(/^Invalid environment variable JWT_SECRET: .*32/)
    expect(error.message).not.toContain(short)
  })

  it('never prints secrets, keys or URLs that may hold a password', () => {
    const cases: Array<Record<string, string>> = [
      { DATABASE_URL: 'postgres//user:hunter2-password@db/jobs' },
      { JWT_SECRET: 'hunter2-password' },
      { WATCH_TOKEN_SECRET: 'hunter2-password' },
      { METRICS_TOKEN: 'hunter2-pw' },
      { REDIS_URL: 'redis//:hunter2-password@redis' },
      { JWT_PUBLIC_KEY: 'hunter2-password' },
      { JWT_SECRET: SECRET, JWT_PUBLIC_KEY: '-----BEGIN PUBLIC KEY-----hunter2-password' },
      { JWT_SECRET: 'hunter2-password-hunter2-password-0123', JWT_ALGORITHMS: 'RS256' },
    ]
    for (const env of cases) {
      const error = refusal(env)
      expect(error.message).not.toContain('hunter2')
    }
  })

  it('refuses RS256 (or any non-HMAC algorithm) with JWT_SECRET', () => {
    const error = refusal({ JWT_SECRET: SECRET, JWT_ALGORITHMS: 'HS256,RS256' })
    expect(error.message).toMatch(/^Invalid environment variable JWT_ALGORITHMS: /)
    expect(error.message).not.toContain(SECRET)
  })

  it('refuses an HMAC algorithm with a public key or JWKS (algorithm confusion)', () => {
    const pem = '-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----'
    expect(refusal({ JWT_PUBLIC_KEY: pem, JWT_ALGORITHMS: 'RS256,HS256' }).message).toMatch(
      /JWT_ALGORITHMS/,
    )
    expect(
      refusal({ JWKS_URL: 'https://idp.example/jwks', JWT_ALGORITHMS: 'HS256' }).message,
    ).toMatch(/JWT_ALGORITHMS/)
  })

  it('refuses two JWT keys at once', () => {
    const pem = '-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----'
    expect(refusal({ JWT_SECRET: SECRET, JWT_PUBLIC_KEY: pem }).message).toMatch(
      /^Invalid environment variable JWT_PUBLIC_KEY: set only one of/,
    )
    expect(refusal({ JWT_PUBLIC_KEY: pem, JWKS_URL: 'https://idp.example/jwks' }).message).toMatch(
      /^Invalid environment variable JWKS_URL: set only one of/,
    )
  })

  it('refuses production without any JWT key, naming JWT_SECRET', () => {
    const error = refusal({ NODE_ENV: 'production', DATABASE_URL: 'postgres://db/jobs' })
    expect(error.message).toMatch(/^Invalid environment variable JWT_SECRET: .*production/)
  })

  it('refuses production with a public key but no WATCH_TOKEN_SECRET', () => {
    const pem = '-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----'
    expect(
      refusal({ NODE_ENV: 'production', DATABASE_URL: 'postgres://db/jobs', JWT_PUBLIC_KEY: pem })
        .message,
    ).toMatch(/^Invalid environment variable WATCH_TOKEN_SECRET: /)
  })

  it('refuses production without DATABASE_URL before any other check, naming it', () => {
    // No JWT key either: the database is what a production install cannot do without
    // (it has no embedded PostgreSQL binaries).
    expect(refusal({ NODE_ENV: 'production' }).message).toMatch(
      /^Invalid environment variable DATABASE_URL: NODE_ENV=production needs it/,
    )
    expect(refusal({ NODE_ENV: 'production', JWT_SECRET: SECRET }).message).toMatch(
      /^Invalid environment variable DATABASE_URL: /,
    )
  })

  it('accepts production with DATABASE_URL and a JWT_SECRET and nothing else', () => {
    const config = loadConfig({
      NODE_ENV: 'production',
      DATABASE_URL: 'postgres://db/jobs',
      JWT_SECRET: SECRET,
    })
    expect(config).toMatchObject({
      isProduction: true,
      jwt: { kind: 'secret' },
      livePage: false,
      workerEnabled: false,
    })
  })

  it('refuses settings that contradict each other', () => {
    expect(refusal({ LONGPOLL_DEFAULT_SECONDS: '90' }).message).toMatch(/LONGPOLL_DEFAULT_SECONDS/)
    expect(
      refusal({ LISTENER_RECONNECT_MIN_MS: '5000', LISTENER_RECONNECT_MAX_MS: '1000' }).message,
    ).toMatch(/LISTENER_RECONNECT_MIN_MS/)
    expect(refusal({ EVENT_SOURCE: 'wal' }).message).toBe(
      'Invalid environment variable EVENT_SOURCE: expected notify or replication (got "wal")',
    )
    expect(refusal({ BRIDGE_OUTBOUND: 'true' }).message).toMatch(
      /^Invalid environment variable BRIDGE_OUTBOUND: .*REDIS_URL/,
    )
    expect(refusal({ LIMITS_STORE: 'redis' }).message).toMatch(
      /^Invalid environment variable LIMITS_STORE: redis needs REDIS_URL/,
    )
  })

  it('turns on no compatibility route by default, each listed section, or all of them', () => {
    expect(loadConfig({})).toMatchObject({ COMPAT_ROUTES: [], COMPAT_ANONYMOUS_READ: false })
    expect(loadConfig({ COMPAT_ROUTES: ' api-jobs, jobs ,api-jobs' }).COMPAT_ROUTES).toEqual([
      'api-jobs',
      'jobs',
    ])
    expect(loadConfig({ COMPAT_ROUTES: 'all' }).COMPAT_ROUTES).toEqual([
      'jobs',
      'api-jobs',
      'api-queue',
      'api-v1',
    ])
    expect(loadConfig({ COMPAT_ANONYMOUS_READ: 'true' }).COMPAT_ANONYMOUS_READ).toBe(true)
  })

  it('refuses an unknown compatibility section, naming the variable and the value', () => {
    expect(refusal({ COMPAT_ROUTES: 'jobs,api-v2' }).message).toBe(
      'Invalid environment variable COMPAT_ROUTES: unknown section "api-v2"; expected all or a list of jobs, api-jobs, api-queue, api-v1 (got "jobs,api-v2")',
    )
    expect(refusal({ COMPAT_ANONYMOUS_READ: 'maybe' }).message).toMatch(
      /^Invalid environment variable COMPAT_ANONYMOUS_READ: expected true or false/,
    )
  })

  it('shares the limits through Redis whenever REDIS_URL is set, unless LIMITS_STORE=memory', () => {
    const redis = { REDIS_URL: 'redis://127.0.0.1:6379' }
    expect(loadConfig({}).limitsStore).toBe('memory')
    expect(loadConfig(redis).limitsStore).toBe('redis')
    expect(loadConfig({ ...redis, BRIDGE_OUTBOUND: 'true' }).limitsStore).toBe('redis')
    expect(loadConfig({ ...redis, LIMITS_STORE: 'memory' }).limitsStore).toBe('memory')
    expect(loadConfig({ ...redis, LIMITS_STORE: 'redis' }).limitsStore).toBe('redis')
  })
})

describe('loadDatabaseConfig', () => {
  it('needs no JWT key in production: the migration step signs nothing', () => {
    const config = loadDatabaseConfig({
      NODE_ENV: 'production',
      DATABASE_URL: 'postgres://db/jobs',
    })
    expect(config).toMatchObject({ NODE_ENV: 'production', DATABASE_URL: 'postgres://db/jobs' })
  })

  it('ignores variables it does not read, even invalid ones', () => {
    expect(() =>
      loadDatabaseConfig({ DATABASE_URL: 'postgres://db/jobs', PORT: 'abc', JWT_SECRET: 'short' }),
    ).not.toThrow()
  })

  it('still validates what it reads, and needs DATABASE_URL in production', () => {
    expect(() => loadDatabaseConfig({ DATABASE_URL: 'mysql://db' })).toThrow(
      /^Invalid environment variable DATABASE_URL: expected a postgres/,
    )
    expect(() => loadDatabaseConfig({ NODE_ENV: 'production' })).toThrow(
      /^Invalid environment variable DATABASE_URL: NODE_ENV=production needs it/,
    )
  })

  it('runs one process by default, one per core with auto, and refuses anything else', () => {
    expect(loadConfig({}).webConcurrency).toBe(1)
    expect(loadConfig({ WEB_CONCURRENCY: '3' }).webConcurrency).toBe(3)
    expect(loadConfig({ WEB_CONCURRENCY: 'auto' }).webConcurrency).toBe(availableParallelism())
    for (const bad of ['0', 'all', '-1', '2.5', '100'])
      expect(refusal({ WEB_CONCURRENCY: bad }).message).toMatch(
        /^Invalid environment variable WEB_CONCURRENCY: expected auto or a number/,
      )
  })
})
