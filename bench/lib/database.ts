// The bench's own database: created on the local PostgreSQL, migrated with the project's
// migrations, dropped at the end. Statistics are read from the `postgres` database so that
// reading them never counts as a transaction of the bench database.
import { execFile } from 'node:child_process'
import { randomBytes, randomUUID } from 'node:crypto'
import { promisify } from 'node:util'
import pg from 'pg'
import { BENCH_DIR, sleep } from './child.js'
import { resolve } from 'node:path'

const run = promisify(execFile)

export const ADMIN_URL =
  process.env.BENCH_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'

export interface BenchDatabase {
  name: string
  url: string
  admin: pg.Client
  /** A superuser connection to the bench database, for seeding and reading rows. */
  pool: pg.Pool
  drop(): Promise<void>
}

export function databaseUrl(name: string, adminUrl = ADMIN_URL): string {
  const url = new URL(adminUrl)
  url.pathname = `/${name}`
  return url.toString()
}

/** On the local PostgreSQL, or on another server (`adminUrl`: a superuser's URL). */
export async function createBenchDatabase(adminUrl = ADMIN_URL): Promise<BenchDatabase> {
  const name = `jobwire_bench_${randomBytes(4).toString('hex')}`
  const admin = new pg.Client({ connectionString: adminUrl, application_name: 'jobwire-bench' })
  await admin.connect()
  await admin.query(`CREATE DATABASE ${name}`)
  const url = databaseUrl(name, adminUrl)
  let pool: pg.Pool | undefined
  const drop = async () => {
    await pool?.end().catch(() => undefined)
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
    await admin.end()
  }
  try {
    await run('npx', ['tsx', 'src/db/migrate-cli.ts'], {
      cwd: resolve(BENCH_DIR, '..'),
      env: { ...process.env, DATABASE_URL: url, LOG_LEVEL: 'silent', NODE_ENV: 'test' },
      timeout: 120_000,
    })
    pool = new pg.Pool({ connectionString: url, max: 4, application_name: 'jobwire-bench' })
    return { name, url, admin, pool, drop }
  } catch (error) {
    await drop().catch(() => undefined)
    throw error
  }
}

/** Inserts `count` running jobs for one tenant; returns their ids in order. */
export async function seedJobs(
  db: BenchDatabase,
  tenantId: string,
  count: number,
  ownerId = 'bench-admin',
): Promise<string[]> {
  const { rows } = await db.pool.query<{ id: string }>(
    `INSERT INTO job_queue (tenant_id, owner_id, type, status, step)
     SELECT $1, $2, 'bench', 'running', 'seeded' FROM generate_series(1, $3)
     RETURNING id`,
    [tenantId, ownerId, count],
  )
  return rows.map((r) => r.id)
}

export async function currentVersions(
  db: BenchDatabase,
  ids: string[],
): Promise<Map<string, number>> {
  const { rows } = await db.pool.query<{ id: string; version: string }>(
    'SELECT id, version FROM job_queue WHERE id = ANY($1)',
    [ids],
  )
  return new Map(rows.map((r) => [r.id, Number(r.version)]))
}

/** Committed transactions of the bench database so far (pg_stat_database). */
export async function xactCommit(db: BenchDatabase): Promise<number> {
  const { rows } = await db.admin.query<{ n: string }>(
    'SELECT xact_commit::text AS n FROM pg_stat_database WHERE datname = $1',
    [db.name],
  )
  return Number(rows[0]?.n ?? NaN)
}

/**
 * PostgreSQL 15 flushes a backend's statistics at most once a second; a busy backend that goes
 * idle less than a second after its last flush holds its counts back for up to 10 s
 * (PGSTAT_IDLE_INTERVAL). Before a window, wait this long so that earlier work is counted
 * before it; after it, a lone transaction in a quiet window is flushed at once.
 */
export const STATS_SETTLE_BEFORE_MS = 11_000
export const STATS_SETTLE_AFTER_MS = 1_500

/** Transactions committed in the bench database during `fn` (pg_stat_database.xact_commit). */
export async function countTransactions<T>(
  db: BenchDatabase,
  fn: () => Promise<T>,
  settle: { beforeMs: number; afterMs: number } = {
    beforeMs: STATS_SETTLE_BEFORE_MS,
    afterMs: STATS_SETTLE_AFTER_MS,
  },
): Promise<{ transactions: number; result: T }> {
  await sleep(settle.beforeMs)
  const before = await xactCommit(db)
  const result = await fn()
  await sleep(settle.afterMs)
  const after = await xactCommit(db)
  return { transactions: after - before, result }
}

export function newTenantId(): string {
  return randomUUID()
}
