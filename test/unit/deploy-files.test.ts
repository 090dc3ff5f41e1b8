// The production set-up cannot run here (no Docker engine), so its files are checked as data:
// docker-compose.yml and the PgBouncer override against the configuration schema, the
// Dockerfile's stages and user, and the nginx settings that SSE and WebSocket depend on.
// Reads files only.
import { existsSync, readFileSync } from 'node:fs'
import { parseDocument } from 'yaml'
import { loadConfig, loadDatabaseConfig } from '../../src/config/index.js'
import { envSchema } from '../../src/config/schema.js'

const ROOT = new URL('../../', import.meta.url)
const read = (path: string) => readFileSync(new URL(path, ROOT), 'utf8')
const exists = (path: string) => existsSync(new URL(path, ROOT))

interface Healthcheck {
  test?: string | string[]
  disable?: boolean
}
interface Service {
  image?: string
  build?: string | { context: string }
  command?: string | string[]
  environment?: Record<string, string | number | boolean | null>
  depends_on?: Record<string, { condition: string }>
  healthcheck?: Healthcheck
  volumes?: string[]
  ports?: string[]
  restart?: string
}
interface ComposeFile {
  services: Record<string, Service>
  volumes?: Record<string, unknown>
}

/** Parses YAML as Compose does: `<<` merge keys on, and any error or warning fails. */
function parseCompose(path: string): ComposeFile {
  const doc = parseDocument(read(path), { merge: true, prettyErrors: true })
  const problems = [...doc.errors, ...doc.warnings].map((e) => e.message)
  if (problems.length) throw new Error(`${path}: ${problems.join('\n')}`)
  return doc.toJS() as ComposeFile
}

/**
 * Compose's variable interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error},
 * ${VAR?error}, $$. A required variable that is missing throws, as `docker compose` does.
 */
function interpolate(value: string, vars: Record<string, string>): string {
  return value.replace(
    /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?)([-?])([^}]*))?\}/g,
    (match, name: string | undefined, colon: string, op: string, arg: string) => {
      if (match === '$$') return '$'
      const set = vars[name!]
      const isMissing = set === undefined || (colon === ':' && set === '')
      if (!isMissing) return set!
      if (op === '?') throw new Error(`required variable ${name} is missing a value: ${arg}`)
      return op === '-' ? arg : ''
    },
  )
}

function environmentOf(service: Service, vars: Record<string, string>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(service.environment ?? {}).map(([key, value]) => [
      key,
      interpolate(String(value ?? ''), vars),
    ]),
  )
}

/** What `docker compose -f a.yml -f b.yml` does to the parts compared here. */
function mergeCompose(base: ComposeFile, override: ComposeFile): ComposeFile {
  const services: Record<string, Service> = { ...base.services }
  for (const [name, extra] of Object.entries(override.services)) {
    const service = services[name] ?? {}
    services[name] = {
      ...service,
      ...extra,
      environment: { ...service.environment, ...extra.environment },
      depends_on: { ...service.depends_on, ...extra.depends_on },
    }
  }
  return { ...base, services }
}

function commandScript(service: Service): string | undefined {
  const command = service.command
  const parts = typeof command === 'string' ? command.split(/\s+/) : command
  return parts?.find((p) => p.endsWith('.js'))
}

/** dist/src/x/y.js → src/x/y.ts (tsconfig.build.json: rootDir ".", outDir "dist"). */
function sourceOf(script: string): string {
  return script.replace(/^dist\//, '').replace(/\.js$/, '.ts')
}

function healthcheckText(service: Service): string {
  const test = service.healthcheck?.test
  return Array.isArray(test) ? test.join(' ') : (test ?? '')
}

function hostOf(url: string): string {
  const u = new URL(url)
  return `${u.hostname}:${u.port || '5432'}`
}

const VARS = {
  POSTGRES_PASSWORD: 'a1b2c3d4e5f6',
  JWT_SECRET: 'j'.repeat(32),
  WATCH_TOKEN_SECRET: 'w'.repeat(32),
}
const SCHEMA_KEYS = new Set(Object.keys(envSchema.shape))
const API_SERVICES = ['api-1', 'api-2']
const JOBWIRE_SERVICES = ['migrate', ...API_SERVICES, 'worker']

const compose = parseCompose('docker-compose.yml')
const services = compose.services

describe('docker-compose.yml', () => {
  it('runs postgres, redis, a migration step, two API instances, a worker and a proxy', () => {
    expect(Object.keys(services).sort()).toEqual(
      ['api-1', 'api-2', 'migrate', 'postgres', 'proxy', 'redis', 'worker'].sort(),
    )
    expect(services.postgres!.image).toMatch(/^postgres:16\b/)
    expect(services.redis!.image).toMatch(/^redis:7\b/)
    expect(services.proxy!.image).toMatch(/^nginx:/)
  })

  it('keeps PostgreSQL data in a named volume', () => {
    const mount = services.postgres!.volumes?.find((v) => v.endsWith(':/var/lib/postgresql/data'))
    expect(mount).toBeDefined()
    expect(Object.keys(compose.volumes ?? {})).toContain(mount!.split(':')[0])
  })

  it('builds every jobwire service from the Dockerfile here', () => {
    for (const name of JOBWIRE_SERVICES) expect([name, services[name]!.build]).toEqual([name, '.'])
  })

  it('orders start-up: postgres healthy → migrate done → API and worker → proxy', () => {
    expect(services.migrate!.depends_on).toEqual({ postgres: { condition: 'service_healthy' } })
    expect(services.migrate!.restart).toBe('no')
    for (const name of [...API_SERVICES, 'worker']) {
      expect([name, services[name]!.depends_on?.migrate]).toEqual([
        name,
        { condition: 'service_completed_successfully' },
      ])
    }
    for (const name of API_SERVICES) {
      expect(services.proxy!.depends_on?.[name]).toEqual({ condition: 'service_healthy' })
    }
  })

  it('runs the migration CLI, the worker CLI and (by default) the API entry of the build', () => {
    expect(commandScript(services.migrate!)).toBe('dist/src/db/migrate-cli.js')
    expect(commandScript(services.worker!)).toBe('dist/src/worker/cli.js')
    for (const name of API_SERVICES) expect(services[name]!.command).toBeUndefined()
    expect(exists(sourceOf('dist/src/db/migrate-cli.js'))).toBe(true)
    // src/worker/cli.ts belongs to the worker runtime's change; its existence is not checked
    // here so that this file's test does not depend on that change landing first.
  })

  it('gives every long-running service a healthcheck, and the API one on /readyz', () => {
    for (const name of ['postgres', 'redis', ...API_SERVICES, 'proxy']) {
      expect([name, healthcheckText(services[name]!)]).not.toEqual([name, ''])
      expect(services[name]!.healthcheck?.disable).toBeUndefined()
    }
    expect(healthcheckText(services.postgres!)).toContain('pg_isready')
    expect(healthcheckText(services.redis!)).toContain('redis-cli ping')
    for (const name of API_SERVICES) expect(healthcheckText(services[name]!)).toContain('/readyz')
    // No HTTP server in these two: the image's /healthz check is switched off on purpose.
    expect(services.migrate!.healthcheck).toEqual({ disable: true })
    expect(services.worker!.healthcheck).toEqual({ disable: true })
  })

  it('sets only environment variables that the configuration schema knows', () => {
    for (const name of JOBWIRE_SERVICES) {
      const unknown = Object.keys(services[name]!.environment ?? {}).filter(
        (key) => !SCHEMA_KEYS.has(key),
      )
      expect([name, unknown]).toEqual([name, []])
    }
  })

  it('takes the secrets from the caller and refuses to start without them', () => {
    for (const name of API_SERVICES) {
      const env = services[name]!.environment!
      expect(env.JWT_SECRET).toMatch(/^\$\{JWT_SECRET:\?[^}]+\}$/)
      expect(env.WATCH_TOKEN_SECRET).toMatch(/^\$\{WATCH_TOKEN_SECRET:\?[^}]+\}$/)
      expect(() => environmentOf(services[name]!, { ...VARS, JWT_SECRET: '' })).toThrow(
        /JWT_SECRET/,
      )
    }
  })

  it('configures each API instance for production behind the proxy', () => {
    for (const name of API_SERVICES) {
      const env = environmentOf(services[name]!, VARS)
      const config = loadConfig(env)
      expect(config).toMatchObject({
        isProduction: true,
        isEmbeddedDatabase: false,
        MIGRATE_ON_START: false,
        HOST: '0.0.0.0',
        PORT: 3000,
        workerEnabled: false,
        livePage: false,
        REDIS_URL: 'redis://redis:6379',
        jwt: { kind: 'secret', secret: VARS.JWT_SECRET },
        WATCH_TOKEN_SECRET: VARS.WATCH_TOKEN_SECRET,
      })
      expect(hostOf(config.DATABASE_URL!)).toBe('postgres:5432')
    }
  })

  it('gives the migration step and the worker a configuration that loads', () => {
    expect(() => loadDatabaseConfig(environmentOf(services.migrate!, VARS))).not.toThrow()
    expect(loadConfig(environmentOf(services.worker!, VARS)).workerEnabled).toBe(true)
  })

  it("trusts exactly nginx's hop for X-Forwarded-For on the API instances", () => {
    // The default trusts no proxy: behind nginx every client would share nginx's address
    // in the per-IP limit. nginx appends the address it saw (deploy/nginx.conf).
    for (const name of API_SERVICES) {
      expect([name, loadConfig(environmentOf(services[name]!, VARS)).TRUST_PROXY]).toEqual([
        name,
        '1',
      ])
    }
    expect(read('deploy/nginx.conf')).toMatch(
      /^\s*proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;/m,
    )
  })

  it('mounts deploy/nginx.conf into the proxy and publishes only the proxy', () => {
    expect(services.proxy!.volumes).toContain('./deploy/nginx.conf:/etc/nginx/nginx.conf:ro')
    expect(services.proxy!.ports).toHaveLength(1)
    for (const [name, service] of Object.entries(services)) {
      if (name !== 'proxy') expect([name, service.ports]).toEqual([name, undefined])
    }
  })
})

describe('deploy/docker-compose.pgbouncer.yml', () => {
  const override = parseCompose('deploy/docker-compose.pgbouncer.yml')
  const merged = mergeCompose(compose, override)

  it('adds PgBouncer in transaction mode, started after postgres is healthy', () => {
    const pgbouncer = override.services.pgbouncer!
    expect(pgbouncer.environment?.POOL_MODE).toBe('transaction')
    expect(pgbouncer.environment?.DB_HOST).toBe('postgres')
    expect(pgbouncer.depends_on?.postgres).toEqual({ condition: 'service_healthy' })
    expect(healthcheckText(pgbouncer)).not.toBe('')
  })

  it('sends the API pool through PgBouncer and the listener straight to PostgreSQL', () => {
    for (const name of API_SERVICES) {
      const config = loadConfig(environmentOf(merged.services[name]!, VARS))
      expect(hostOf(config.DATABASE_URL!)).toBe('pgbouncer:6432')
      expect(hostOf(config.LISTEN_DATABASE_URL!)).toBe('postgres:5432')
      // node-postgres would send statement_timeout as a startup parameter PgBouncer rejects.
      expect(config.DB_STATEMENT_TIMEOUT_MS).toBe(0)
      expect(merged.services[name]!.depends_on?.pgbouncer).toEqual({
        condition: 'service_healthy',
      })
    }
  })

  it('leaves migrations on a direct session (they hold an advisory lock)', () => {
    expect(override.services.migrate).toBeUndefined()
    const config = loadDatabaseConfig(environmentOf(merged.services.migrate!, VARS))
    expect(hostOf(config.DATABASE_URL!)).toBe('postgres:5432')
  })

  it('sends the standalone worker through PgBouncer, without the statement_timeout parameter', () => {
    // src/worker/cli.ts passes DB_STATEMENT_TIMEOUT_MS to the worker's pool.
    const config = loadConfig(environmentOf(merged.services.worker!, VARS))
    expect(hostOf(config.DATABASE_URL!)).toBe('pgbouncer:6432')
    expect(config.DB_STATEMENT_TIMEOUT_MS).toBe(0)
  })

  it('is described by docs/production.md as the files set it up', () => {
    const doc = read('docs/production.md')
    const goesTo = (connection: string) =>
      doc
        .split('\n')
        .find((line) => line.startsWith(`| ${connection} `))
        ?.split('|')[2]
        ?.trim()
    expect(goesTo('API query pool')).toBe('PgBouncer')
    expect(goesTo('API listener')).toBe('PostgreSQL, directly')
    expect(goesTo('migrations')).toBe('PostgreSQL, directly')
    expect(goesTo('worker claims/progress/reaps')).toBe('PgBouncer')
    // The worker honours DB_STATEMENT_TIMEOUT_MS and needs no direct connection.
    expect(doc).not.toMatch(/ignores[\s>]+`?DB_STATEMENT_TIMEOUT_MS/)
    expect(doc).not.toMatch(/give the worker a direct/)
  })

  it('sets only environment variables that the configuration schema knows', () => {
    for (const name of JOBWIRE_SERVICES) {
      const unknown = Object.keys(override.services[name]?.environment ?? {}).filter(
        (key) => !SCHEMA_KEYS.has(key),
      )
      expect([name, unknown]).toEqual([name, []])
    }
  })
})

interface Instruction {
  keyword: string
  args: string
}

/** Dockerfile instructions, with `\` continuations joined and comments dropped, by stage. */
function parseDockerfile(text: string): Instruction[][] {
  const stages: Instruction[][] = []
  const joined = text.replace(/\\\r?\n/g, ' ')
  for (const raw of joined.split(/\r?\n/)) {
    const line = raw.trim()
    if (!line || line.startsWith('#')) continue
    const [, keyword, args] = /^(\S+)\s*(.*)$/.exec(line)!
    const instruction = { keyword: keyword!.toUpperCase(), args: args!.replace(/\s+/g, ' ') }
    if (instruction.keyword === 'FROM') stages.push([])
    stages.at(-1)?.push(instruction)
  }
  return stages
}

describe('Dockerfile', () => {
  const stages = parseDockerfile(read('Dockerfile'))
  const runtime = stages.at(-1)!
  const builder = stages[0]!
  const find = (stage: Instruction[], keyword: string) =>
    stage.filter((i) => i.keyword === keyword).map((i) => i.args)

  it('builds in one stage and runs in another, both on node 20', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2)
    expect(read('Dockerfile')).toMatch(/^ARG NODE_IMAGE=node:20-bookworm-slim$/m)
    expect(find(builder, 'RUN').join('\n')).toMatch(/npm ci\b/)
    expect(find(builder, 'RUN').join('\n')).toContain('npm run build')
  })

  it('installs only production dependencies in the runtime image', () => {
    const runs = find(runtime, 'RUN').join('\n')
    expect(runs).toContain('npm ci --omit=dev')
    expect(runs).not.toMatch(/npm (install|i)\b/)
  })

  it('copies dist/, migrations/ and package.json (the project root marker)', () => {
    const copies = find(runtime, 'COPY')
    expect(copies).toContainEqual(expect.stringMatching(/^--from=builder \/app\/dist \.\/dist$/))
    expect(copies).toContainEqual(expect.stringMatching(/^migrations \.\/migrations$/))
    expect(copies).toContainEqual(expect.stringMatching(/^package\.json package-lock\.json \.\/$/))
  })

  it('runs as the non-root node user in production mode on 0.0.0.0:3000', () => {
    const users = find(runtime, 'USER')
    expect(users.at(-1)).toBe('node')
    const envs = find(runtime, 'ENV').join(' ')
    expect(envs).toMatch(/\bNODE_ENV=production\b/)
    expect(envs).toMatch(/\bHOST=0\.0\.0\.0\b/)
    expect(find(runtime, 'EXPOSE')).toEqual(['3000'])
  })

  it('checks liveness on /healthz and starts the compiled entry point', () => {
    expect(find(runtime, 'HEALTHCHECK').join('\n')).toContain('/healthz')
    const cmd = JSON.parse(find(runtime, 'CMD').at(-1)!) as string[]
    expect(cmd).toEqual(['node', 'dist/src/main.js'])
    expect(exists(sourceOf(cmd[1]!))).toBe(true)
    const build = JSON.parse(read('tsconfig.build.json')) as {
      compilerOptions: { rootDir?: string }
    }
    const base = JSON.parse(read('tsconfig.json')) as { compilerOptions: { outDir?: string } }
    expect([build.compilerOptions.rootDir, base.compilerOptions.outDir]).toEqual(['.', 'dist'])
  })

  it('has a .dockerignore that keeps local state out of the build context', () => {
    const ignored = read('.dockerignore')
      .split(/\r?\n/)
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'))
    expect(ignored).toEqual(
      expect.arrayContaining(['node_modules', 'dist', '.data', '.git', 'coverage']),
    )
    for (const needed of ['src', 'migrations', 'package.json', 'package-lock.json']) {
      expect(ignored).not.toContain(needed)
    }
  })
})

describe('deploy/nginx.conf', () => {
  // Directives only: comments removed so that a commented-out setting does not count.
  const conf = read('deploy/nginx.conf')
    .split(/\r?\n/)
    .map((line) => line.replace(/#.*$/, '').trim())
    .filter(Boolean)
    .join('\n')
  const directive = (text: string) =>
    expect(conf).toMatch(new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')};$`, 'm'))

  it('never buffers or caches a response, so SSE events and long-poll answers flow at once', () => {
    directive('proxy_buffering off')
    directive('proxy_cache off')
    directive('proxy_http_version 1.1')
  })

  it('keeps quiet streams open for an hour', () => {
    directive('proxy_read_timeout 1h')
    directive('proxy_send_timeout 1h')
  })

  it('balances on open connections across both API instances', () => {
    directive('least_conn')
    const servers = [...conf.matchAll(/^server (\S+?):(\d+)\b/gm)].map((m) => `${m[1]}:${m[2]}`)
    expect(servers).toEqual(API_SERVICES.map((name) => `${name}:3000`))
  })

  it('forwards WebSocket upgrades on /v1/ws and GET /v1/jobs/:id', () => {
    directive('proxy_set_header Upgrade $jobwire_upgrade')
    directive('proxy_set_header Connection $jobwire_connection')
    const upgrading = [...conf.matchAll(/^location (=|~) (\S+) \{\n([^}]*)\}/gm)]
      .filter((m) => m[3]!.includes('set $jobwire_upgrade $http_upgrade;'))
      .map((m) => ({ exact: m[1] === '=', pattern: m[2]! }))
    const matches = (path: string) =>
      upgrading.some((l) => (l.exact ? l.pattern === path : new RegExp(l.pattern).test(path)))
    expect(matches('/v1/ws')).toBe(true)
    expect(matches('/v1/jobs/0b5b1d4e-3f5c-4c1e-9a57-6f4a0c2d8e11')).toBe(true)
    expect(matches('/v1/jobs/0b5b1d4e-3f5c-4c1e-9a57-6f4a0c2d8e11/events')).toBe(false)
    expect(matches('/v1/jobs')).toBe(false)
  })

  it('passes the X-Request-Id through, or makes one', () => {
    directive('proxy_set_header X-Request-Id $jobwire_request_id')
    expect(conf).toMatch(/map \$http_x_request_id \$jobwire_request_id \{[^}]*'' +\$request_id;/)
  })

  it('never logs a query string (it may hold ?token=)', () => {
    const formats = conf.slice(conf.indexOf('log_format'), conf.indexOf('access_log'))
    expect(formats).not.toMatch(/\$request\b|\$request_uri|\$args|\$query_string/)
  })
})
