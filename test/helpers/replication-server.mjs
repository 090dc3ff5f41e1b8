// Global setup of the integration-replication project (jest.config.js): a PostgreSQL with
// wal_level=logical for EVENT_SOURCE=replication, and a migrated template on it that every
// test file clones. Order: TEST_REPLICATION_DATABASE_URL → TEST_DATABASE_URL when that server
// already runs wal_level=logical → an embedded PostgreSQL started with wal_level=logical by
// the service's own src/dev/embedded-postgres.ts (so it works as root too). The names it sets
// are the project's own; test/helpers/replication-env.ts hands them to the test files.
import { execFileSync } from 'node:child_process'
import { chmod, mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'

export default async function replicationGlobalSetup() {
  const server = await startLogicalServer()
  const template = `jobwire_repl_tpl_${process.pid}_${Date.now().toString(36)}`
  await adminQuery(server.url, `CREATE DATABASE ${template}`)
  execFileSync(process.execPath, ['--import', 'tsx', 'src/db/migrate-cli.ts'], {
    env: {
      ...process.env,
      DATABASE_URL: withDatabase(server.url, template),
      LOG_LEVEL: 'warn',
      NODE_ENV: 'test',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  })
  process.stderr.write(
    `integration-replication: PostgreSQL with wal_level=logical (${server.kind})\n`,
  )
  process.env.JOBWIRE_TEST_REPLICATION_SERVER_URL = server.url
  process.env.JOBWIRE_TEST_REPLICATION_TEMPLATE = template
  globalThis.__jobwireReplicationTeardown = async () => {
    await adminQuery(server.url, `DROP DATABASE IF EXISTS ${template} WITH (FORCE)`)
    await server.stop()
  }
}

async function startLogicalServer() {
  const given = process.env.TEST_REPLICATION_DATABASE_URL
  if (given) return { kind: 'TEST_REPLICATION_DATABASE_URL', url: given, stop: async () => {} }
  const shared = process.env.TEST_DATABASE_URL
  if (shared && (await walLevel(shared)) === 'logical')
    return { kind: 'TEST_DATABASE_URL', url: shared, stop: async () => {} }
  const { tsImport } = await import('tsx/esm/api')
  const { startEmbeddedPostgres } = await tsImport(
    '../../src/dev/embedded-postgres.ts',
    import.meta.url,
  )
  const { createLogger } = await tsImport('../../src/telemetry/logger.ts', import.meta.url)
  const dir = await mkdtemp(join(tmpdir(), 'jobwire-test-pg-logical-'))
  await chmod(dir, 0o755) // mkdtemp makes it 0700: the postgres user must enter it
  const embedded = await startEmbeddedPostgres({
    dataDir: join(dir, 'data'),
    port: await freePort(),
    logger: createLogger({ level: 'warn', pretty: false }),
    isLogical: true,
  })
  return {
    kind: 'embedded',
    url: embedded.url,
    stop: async () => {
      await embedded.stop()
      await rm(dir, { recursive: true, force: true })
    },
  }
}

async function walLevel(url) {
  return adminQuery(url, 'SHOW wal_level').then(
    (rows) => rows[0]?.wal_level,
    () => undefined,
  )
}

async function adminQuery(url, text) {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return (await client.query(text)).rows
  } finally {
    await client.end()
  }
}

function withDatabase(url, database) {
  const u = new URL(url)
  u.pathname = `/${database}`
  return u.toString()
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
