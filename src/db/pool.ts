// The query pool and the kysely instance over it. The pool's connections carry
// application_name `jobwire`; the listener's own connection is `jobwire-listener`. The reads
// on the hot paths (a request's RLS read, the hub's batched read) skip kysely's query
// building and run as named prepared statements: parsed and planned once per connection
// (DB_PREPARED_STATEMENTS; off behind a transaction pooler that cannot keep them, such as
// PgBouncer before 1.21).
import pg from 'pg'
import { Kysely, PostgresDialect } from 'kysely'
import type { Database } from './schema.js'

export type Db = Kysely<Database>

export interface PoolOptions {
  connectionString: string
  max: number
  statementTimeoutMs: number
  applicationName?: string
}

export function createPool(options: PoolOptions): pg.Pool {
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    max: options.max,
    application_name: options.applicationName ?? 'jobwire',
    statement_timeout: options.statementTimeoutMs || undefined,
    idleTimeoutMillis: 30_000,
    connectionTimeoutMillis: 10_000,
    keepAlive: true,
  })
  // pg-pool takes its error listener off a client while the client is lent out. A connection
  // cut mid-query without a word from the server (a network failure, a proxy or pooler that
  // dies) then emits 'error' with no listener, and that kills the process. The query has
  // failed with the same error already, and the pool drops the dead client on release.
  pool.on('connect', (client) => client.on('error', () => undefined))
  return pool
}

/** The pool behind each kysely instance, for the hot-path statements (hotQuery). */
const hotPaths = new WeakMap<Db, { pool: pg.Pool; isPrepared: boolean }>()

export function createDb(pool: pg.Pool, options: { preparedStatements?: boolean } = {}): Db {
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) })
  hotPaths.set(db, { pool, isPrepared: options.preparedStatements ?? true })
  return db
}

/**
 * Runs one fixed statement of a hot path on the pool behind `db`: named, so each connection
 * prepares it once, unless prepared statements are off. `name` must be unique per `text`.
 */
export async function hotQuery<R extends pg.QueryResultRow>(
  db: Db,
  name: string,
  text: string,
  values: unknown[],
): Promise<R[]> {
  const hot = hotPaths.get(db)
  if (!hot) throw new Error('hotQuery needs a Db made by createDb()')
  const config: pg.QueryConfig = hot.isPrepared ? { name, text, values } : { text, values }
  return (await hot.pool.query<R>(config)).rows
}
