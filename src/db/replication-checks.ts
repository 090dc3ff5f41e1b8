// What EVENT_SOURCE=replication needs from PostgreSQL, checked once at start-up over a plain
// connection with the replication stream's login: each missing piece is named with what to
// change, so that a misconfigured server stops the start instead of a stream retrying forever.
import pg from 'pg'
import type { Logger } from '../telemetry/logger.js'

/** The publication the replication stream reads (migrations/1764000000008…). */
export const PUBLICATION = 'jobwire_job_queue'

/**
 * Throws, naming EVENT_SOURCE and what to change, when the server cannot serve the stream.
 * An unreachable server is not a refusal: the stream retries and /readyz says not ready.
 */
export async function assertReplicationReady(
  connectionString: string,
  logger: Logger,
): Promise<void> {
  const readiness = await readReplicationReadiness(connectionString, PUBLICATION).catch(
    (error: unknown) => {
      logger.warn({ err: error }, 'could not check the server for EVENT_SOURCE=replication')
      return undefined
    },
  )
  const problems = readiness ? replicationProblems(readiness, PUBLICATION) : []
  if (problems.length > 0)
    throw new Error(
      `EVENT_SOURCE=replication cannot start: ${problems.join('; ')}. Or set EVENT_SOURCE=notify (docs/production.md).`,
    )
}

export interface ReplicationReadiness {
  login: string
  wal_level: string
  max_replication_slots: number
  slots_in_use: number
  max_wal_senders: number
  senders_in_use: number
  can_replicate: boolean
  has_publication: boolean
}

/** What is missing, as sentences; empty when the server is ready. */
export function replicationProblems(r: ReplicationReadiness, publication: string): string[] {
  const problems: string[] = []
  if (r.wal_level !== 'logical')
    problems.push(
      `wal_level is ${r.wal_level}, it must be logical: ALTER SYSTEM SET wal_level = logical (or wal_level = logical in postgresql.conf) and restart PostgreSQL`,
    )
  if (r.max_replication_slots - r.slots_in_use < 1)
    problems.push(
      `no free replication slot (max_replication_slots = ${r.max_replication_slots}, ${r.slots_in_use} in use; every instance holds one): raise max_replication_slots and restart PostgreSQL`,
    )
  if (r.max_wal_senders - r.senders_in_use < 1)
    problems.push(
      `no free WAL sender (max_wal_senders = ${r.max_wal_senders}, ${r.senders_in_use} in use; every instance holds one): raise max_wal_senders and restart PostgreSQL`,
    )
  if (!r.can_replicate)
    problems.push(
      `the login ${r.login} may not replicate: ALTER ROLE ${r.login} REPLICATION (and allow it a replication connection in pg_hba.conf when that lists them)`,
    )
  if (!r.has_publication)
    problems.push(
      `publication ${publication} is missing: run the migrations (migrations/1764000000008_replication-event-source.sql) as a login with CREATE on the database`,
    )
  return problems
}

export async function readReplicationReadiness(
  connectionString: string,
  publication: string,
): Promise<ReplicationReadiness> {
  const client = new pg.Client({
    connectionString,
    application_name: 'jobwire',
    connectionTimeoutMillis: 10_000,
  })
  client.on('error', () => undefined)
  await client.connect()
  try {
    const { rows } = await client.query<ReplicationReadiness>(
      `SELECT current_user AS login,
              current_setting('wal_level') AS wal_level,
              current_setting('max_replication_slots')::int AS max_replication_slots,
              (SELECT count(*)::int FROM pg_replication_slots) AS slots_in_use,
              current_setting('max_wal_senders')::int AS max_wal_senders,
              (SELECT count(*)::int FROM pg_stat_replication) AS senders_in_use,
              (SELECT rolsuper OR rolreplication FROM pg_roles WHERE rolname = current_user)
                AS can_replicate,
              EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1) AS has_publication`,
      [publication],
    )
    return rows[0]!
  } finally {
    await client.end().catch(() => undefined)
  }
}
