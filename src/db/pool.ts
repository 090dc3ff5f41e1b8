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
  return new pg.Pool({
    connectionString: options.connectionString,
    max: options.max,
    application_name: options.applicationName ?? 'jobwire',
    statement_timeout: options.statementTimeoutMs || undefined,
    idleTimeoutMillis: 30_000,
    connectionTimeoutMillis: 10_000,
    keepAlive: true,
  })
}

export function createDb(pool: pg.Pool): Db {
  return new Kysely<Database>({ dialect: new PostgresDialect({ pool }) })
}
