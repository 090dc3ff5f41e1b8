// A PostgreSQL with wal_level=logical for the `replication` scenario: BENCH_REPLICATION_URL (a
// superuser's URL on such a server), else an embedded PostgreSQL that the bench starts itself
// with the service's own src/dev/embedded-postgres.ts (wal_level=logical, a free port, a
// temporary data folder) and stops at the end.
import { chmod, mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { startEmbeddedPostgres } from '../../src/dev/embedded-postgres.js'
import { createLogger } from '../../src/telemetry/logger.js'

export interface LogicalServer {
  adminUrl: string
  kind: 'BENCH_REPLICATION_URL' | 'embedded'
  stop(): Promise<void>
}

export async function startLogicalServer(): Promise<LogicalServer> {
  const given = process.env.BENCH_REPLICATION_URL
  if (given) {
    const client = new pg.Client({ connectionString: given })
    await client.connect()
    const { rows } = await client.query<{ wal_level: string }>('SHOW wal_level')
    await client.end()
    if (rows[0]?.wal_level !== 'logical')
      throw new Error(`BENCH_REPLICATION_URL: wal_level is ${rows[0]?.wal_level}, not logical`)
    return { adminUrl: given, kind: 'BENCH_REPLICATION_URL', stop: async () => undefined }
  }
  const dir = await mkdtemp(join(tmpdir(), 'jobwire-bench-pg-logical-'))
  await chmod(dir, 0o755) // the postgres user (when the bench runs as root) must enter it
  const embedded = await startEmbeddedPostgres({
    dataDir: join(dir, 'data'),
    port: await freePort(),
    logger: createLogger({ level: 'warn', pretty: false }),
    isLogical: true,
  })
  return {
    adminUrl: embedded.url,
    kind: 'embedded',
    stop: async () => {
      await embedded.stop()
      await rm(dir, { recursive: true, force: true })
    },
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0))
    })
  })
}
