// Owns the NOTIFY switch (table jobwire_event_source, migrations/1764000000008…): the job_queue
// triggers emit NOTIFY only while it is on. It is on exactly while some instance listens:
//   * a listener (EVENT_SOURCE=notify) turns it on each time it has LISTENed, before it
//     re-reads what it watches;
//   * a replicating instance sets it, every few seconds, to "is a listener connected to this
//     database" (application_name jobwire-listener, which also counts listeners of versions
//     that predate the switch), and on its way out turns it on when it is the last one.
// Both take the row's lock first and only then look at pg_stat_activity (whose snapshot is
// taken at its first use in a transaction), so a listener that connects while a replicating
// instance decides is either seen or turns the switch back on after it: none is left without
// NOTIFY. A fleet being switched therefore loses nothing (docs/decisions.md, "Event source").
import { sql } from 'kysely'
import type pg from 'pg'
import type { Db } from './pool.js'

export const LISTENER_APPLICATION_NAME = 'jobwire-listener'

/** SQLSTATE 42P01: the table does not exist (a database migrated before the switch). */
const UNDEFINED_TABLE = '42P01'
const INSUFFICIENT_PRIVILEGE = '42501'

/**
 * A listener's connection, right after LISTEN: NOTIFY must be on. It always writes the row,
 * so it waits for a replicating instance deciding at this moment and then wins (an UPDATE
 * … WHERE NOT notify would skip the row still shown as on, and lose).
 */
export async function turnNotifyOn(
  client: pg.Client,
): Promise<'on' | 'no-switch' | 'not-permitted'> {
  try {
    await client.query(`
      UPDATE jobwire_event_source
         SET notify = true, changed_at = CASE WHEN notify THEN changed_at ELSE now() END
       WHERE id`)
    return 'on'
  } catch (error) {
    const code = (error as { code?: string }).code
    if (code === UNDEFINED_TABLE) return 'no-switch'
    // A login that may not write the switch: replicating instances still see this listener
    // and turn NOTIFY on within one check (the caller says so in the log).
    if (code === INSUFFICIENT_PRIVILEGE) return 'not-permitted'
    throw error
  }
}

/**
 * A replicating instance: NOTIFY on exactly while a listener is connected to this database.
 * Returns the switch's new state (undefined: no switch in this database).
 */
export async function updateNotifySwitch(db: Db): Promise<boolean | undefined> {
  try {
    return await db.transaction().execute(async (trx) => {
      await sql`SELECT notify FROM jobwire_event_source WHERE id FOR UPDATE`.execute(trx)
      const { rows } = await sql<{ isListened: boolean }>`
        SELECT EXISTS (
          SELECT 1 FROM pg_stat_activity
           WHERE application_name = ${LISTENER_APPLICATION_NAME} AND datname = current_database()
        ) AS "isListened"`.execute(trx)
      const isListened = rows[0]!.isListened
      await sql`
        UPDATE jobwire_event_source SET notify = ${isListened}, changed_at = now()
         WHERE id AND notify IS DISTINCT FROM ${isListened}`.execute(trx)
      return isListened
    })
  } catch (error) {
    if ((error as { code?: string }).code === UNDEFINED_TABLE) return undefined
    throw error
  }
}

/**
 * A replicating instance that stops: when no other replicating connection is left on this
 * database, NOTIFY goes back on, so that listeners started later (or a rollback to a version
 * without the switch) are served at once.
 */
export async function releaseNotifySwitch(
  db: Db,
  replicationApplicationName: string,
  ownPid: number | undefined,
): Promise<void> {
  await sql`
    UPDATE jobwire_event_source SET notify = true, changed_at = now()
     WHERE id AND NOT notify AND NOT EXISTS (
       SELECT 1 FROM pg_stat_activity
        WHERE application_name = ${replicationApplicationName}
          AND datname = current_database() AND pid IS DISTINCT FROM ${ownPid ?? null}::int)`
    .execute(db)
    .catch((error: unknown) => {
      if ((error as { code?: string }).code !== UNDEFINED_TABLE) throw error
    })
}
