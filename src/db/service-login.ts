// What the service checks of its own database login: that it can read every tenant's jobs
// (the event pipeline's batched read and catch-up cross tenants), and, for /readyz, that the
// database answers at all.
import { sql } from 'kysely'
import type { Logger } from '../telemetry/logger.js'
import type { Db } from './pool.js'

/**
 * Refuses to start when the login can read jobs of one tenant only: that needs a superuser,
 * BYPASSRLS or the job_queue_service policy (granted to the login that ran the migrations,
 * docs/decisions.md). An unreachable database is not refused: /readyz reports it.
 */
export async function assertServiceCanReadAllTenants(db: Db, logger: Logger): Promise<void> {
  const result = await sql<{ login: string; ok: boolean }>`
    SELECT current_user AS login,
           r.rolsuper OR r.rolbypassrls OR EXISTS (
             SELECT 1 FROM pg_policies p
             WHERE p.tablename = 'job_queue' AND p.policyname = 'job_queue_service'
               AND (current_user = ANY (p.roles) OR pg_has_role(current_user, p.roles[1], 'MEMBER'))
           ) AS ok
    FROM pg_roles r WHERE r.rolname = current_user`
    .execute(db)
    .catch((error: unknown) => {
      logger.warn(
        { err: error },
        'could not check the database login; /readyz reports the database',
      )
      return undefined
    })
  const row = result?.rows[0]
  if (row && !row.ok) {
    throw new Error(
      `the database login ${row.login} cannot read jobs across tenants for the event pipeline: ` +
        'run the migrations with this login, or add it to the job_queue_service policy (docs/decisions.md)',
    )
  }
}

/** True when the query pool gets an answer (the readiness check). */
export function isDatabaseAnswering(db: Db): Promise<boolean> {
  return sql`SELECT 1`.execute(db).then(
    () => true,
    () => false,
  )
}
