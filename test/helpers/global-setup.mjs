// Picks the test database server once per run, then migrates a template database that every
// test file clones (CREATE DATABASE … TEMPLATE), so files run in parallel and in any order.
// Order: TEST_DATABASE_URL → testcontainers (when a Docker engine answers) → embedded PostgreSQL.
// Plain ESM JavaScript: jest loads global setup outside its module transform.
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { chmod, mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'

export default async function globalSetup() {
  const server = await startServer()
  // Say which server this run tests against: a green run on the wrong database misleads.
  process.stdout.write(`\njobwire tests: database server: ${server.label}\n`)
  const template = `jobwire_tpl_${process.pid}_${Date.now().toString(36)}`
  await adminQuery(server.url, `CREATE DATABASE ${template}`)
  // The same code path as `npm run migrate`.
  execFileSync(process.execPath, ['--import', 'tsx', 'src/db/migrate-cli.ts'], {
    env: {
      ...process.env,
      DATABASE_URL: withDatabase(server.url, template),
      LOG_LEVEL: 'warn',
      NODE_ENV: 'test',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  })

  process.env.JOBWIRE_TEST_SERVER_URL = server.url
  process.env.JOBWIRE_TEST_TEMPLATE = template
  globalThis.__jobwireTestTeardown = async () => {
    await adminQuery(server.url, `DROP DATABASE IF EXISTS ${template} WITH (FORCE)`)
    await server.stop()
  }
}

async function adminQuery(url, text) {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    await client.query(text)
  } finally {
    await client.end()
  }
}

function withDatabase(url, database) {
  const u = new URL(url)
  u.pathname = `/${database}`
  return u.toString()
}

async function startServer() {
  if (process.env.TEST_DATABASE_URL) {
    const url = process.env.TEST_DATABASE_URL
    return { url, label: `TEST_DATABASE_URL ${masked(url)}`, stop: async () => undefined }
  }
  if (await dockerAnswers()) {
    const { PostgreSqlContainer } = await import('@testcontainers/postgresql')
    const container = await new PostgreSqlContainer('postgres:16-alpine').start()
    const url = container.getConnectionUri()
    return {
      url,
      label: `a postgres:16-alpine container (testcontainers; no TEST_DATABASE_URL) at ${masked(url)}`,
      stop: async () => void (await container.stop()),
    }
  }
  // The service's own embedded start-up (src/dev/embedded-postgres.ts, loaded through tsx):
  // it also works as root from a private checkout, where PostgreSQL's `postgres` user could
  // not reach the binaries or the data.
  const { tsImport } = await import('tsx/esm/api')
  const { startEmbeddedPostgres } = await tsImport(
    '../../src/dev/embedded-postgres.ts',
    import.meta.url,
  )
  const { createLogger } = await tsImport('../../src/telemetry/logger.ts', import.meta.url)
  const dir = await mkdtemp(join(tmpdir(), 'jobwire-test-pg-'))
  await chmod(dir, 0o755) // mkdtemp makes it 0700: the postgres user must enter it
  const port = await freePort()
  const embedded = await startEmbeddedPostgres({
    dataDir: join(dir, 'data'),
    port,
    logger: createLogger({ level: 'warn', pretty: false }),
  })
  return {
    url: embedded.url,
    label: `an embedded PostgreSQL (no TEST_DATABASE_URL, no Docker engine) on 127.0.0.1:${port}, data in ${embedded.dataDir}`,
    stop: async () => {
      await embedded.stop()
      await rm(dir, { recursive: true, force: true })
    },
  }
}

/** The URL with its password, if any, replaced by ***. */
function masked(url) {
  const u = new URL(url)
  if (u.password) u.password = '***'
  return u.toString()
}

async function dockerAnswers() {
  const socket =
    process.env.DOCKER_HOST ??
    (existsSync('/var/run/docker.sock') ? 'unix:///var/run/docker.sock' : undefined)
  if (!socket) return false
  try {
    const { getContainerRuntimeClient } = await import('testcontainers')
    await Promise.race([
      getContainerRuntimeClient(),
      new Promise((_, reject) => setTimeout(() => reject(new Error('timeout')), 5000)),
    ])
    return true
  } catch {
    return false
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address()
      srv.close(() => resolve(typeof address === 'object' && address ? address.port : 0))
    })
  })
}
