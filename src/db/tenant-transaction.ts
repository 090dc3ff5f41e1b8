// Request code reaches job_queue only through withTenant() or readVisibleJob(): both run as
// the non-login role jobwire_app with the principal's tenant, user and role set
// transaction-locally, so row-level security decides what the request can see, even when
// the service logs in as a superuser.
import { sql, type Transaction } from 'kysely'
import { JOB_DOCUMENT_COLUMNS, type JobDocumentRow } from './jobs.js'
import { hotQuery, type Db } from './pool.js'
import type { Database } from './schema.js'

export const APP_ROLE = 'jobwire_app'

const READ_COLUMNS = JOB_DOCUMENT_COLUMNS.map((column) => `"${column}"`).join(', ')
const READ_JOB = `SELECT ${READ_COLUMNS} FROM jobwire_read_job($1::uuid, $2, $3, $4::uuid)`
const READ_JOBS = `SELECT ${READ_COLUMNS} FROM jobwire_read_jobs($1::uuid, $2, $3, $4::uuid[])`

/** Who a request acts for. `jobId` is set for a watch token: it opens that one job only. */
export interface Principal {
  tenantId: string
  userId: string
  role: 'admin' | 'member'
  /** A watch token's job; undefined for a user token. */
  jobId?: string
}

export type TenantTransaction = Transaction<Database>

/**
 * Runs `fn` in a transaction as jobwire_app with the principal's settings. The role switch
 * and the three settings are one statement (one round trip).
 */
export async function withTenant<T>(
  db: Db,
  principal: Principal,
  fn: (trx: TenantTransaction) => Promise<T>,
): Promise<T> {
  return db.transaction().execute(async (trx) => {
    await sql`SELECT set_config('role', ${APP_ROLE}, true),
                     set_config('jobwire.tenant_id', ${principal.tenantId}, true),
                     set_config('jobwire.user_id', ${principal.userId}, true),
                     set_config('jobwire.role', ${principal.role}, true)`.execute(trx)
    return fn(trx)
  })
}

/**
 * Reads one job under RLS in a single round trip (the plpgsql function jobwire_read_job
 * switches role and sets the settings for its own statement). The hot path of GET, wait and
 * every stream's authorising read. Undefined when the job is missing or not visible.
 */
export function readVisibleJob(
  db: Db,
  principal: Principal,
  jobId: string,
): Promise<JobDocumentRow | undefined> {
  return hotQuery<JobDocumentRow>(db, 'jobwire_read_job', READ_JOB, [
    principal.tenantId,
    principal.userId,
    principal.role,
    jobId,
  ]).then((rows) => rows[0])
}

/**
 * Reads many jobs under RLS in one round trip (the plpgsql function jobwire_read_jobs): the
 * authorising read of a multiplexed subscription. Returns the visible ones; a missing or
 * invisible id is simply absent.
 */
export async function readVisibleJobs(
  db: Db,
  principal: Principal,
  jobIds: readonly string[],
): Promise<JobDocumentRow[]> {
  if (jobIds.length === 0) return []
  return hotQuery<JobDocumentRow>(db, 'jobwire_read_jobs', READ_JOBS, [
    principal.tenantId,
    principal.userId,
    principal.role,
    jobIds,
  ])
}
