// The query pool and the kysely instance over it. The pool's connections carry
// application_name `jobwire`; the listener's own connection is `jobwire-listener`.
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

export function createDb(pool: pg.Pool): Db {
  return new Kysely<Database>({ dialect: new PostgresDialect({ pool }) })
}
