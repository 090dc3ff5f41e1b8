// Queries on job_queue. Request code calls them inside withTenant(), so RLS applies.
// Reads that answer a request with a job select JOB_DOCUMENT_COLUMNS, never the payload:
// no response carries it, and it can be the largest column by far.
import { sql } from 'kysely'
import type { JobStatus } from '../protocol/job.js'
import type { JobRow } from './schema.js'
import type { TenantTransaction } from './tenant-transaction.js'
import { hotQuery, type Db } from './pool.js'

/** The job document's columns (src/events/document.ts), and the tenant and owner. */
export const JOB_DOCUMENT_COLUMNS = [
  'id',
  'tenant_id',
  'owner_id',
  'type',
  'status',
  'progress',
  'step',
  'eta_seconds',
  'result',
  'error',
  'attempts',
  'max_attempts',
  'cancel_requested',
  'version',
  'created_at',
  'updated_at',
  'started_at',
  'completed_at',
] as const satisfies ReadonlyArray<keyof JobRow>

/** A job as the reads return it: enough to build its document and to route its changes. */
export type JobDocumentRow = Pick<JobRow, (typeof JOB_DOCUMENT_COLUMNS)[number]>

export interface NewJob {
  tenantId: string
  ownerId: string
  type: string
  payload: unknown
  maxAttempts?: number
  priority?: number
  runAt?: string
  idempotencyKey?: string
  requestHash?: string
}

/**
 * The owner's key space: keys are unique per (tenant, owner), and ownerless jobs (inserted by
 * SQL) share one space per tenant. The expression of the unique index
 * job_queue_idempotency_key_owner_idx (migrations/1764000000005_idempotency-per-owner.sql).
 */
const KEY_OWNER = sql<string>`coalesce(owner_id, '')`

/**
 * Inserts a job; with an idempotency key its owner used already, returns undefined. The
 * ON CONFLICT target is the unique index's columns and predicate, so that PostgreSQL infers
 * that index as the arbiter.
 */
export async function insertJob(
  trx: TenantTransaction,
  job: NewJob,
): Promise<JobDocumentRow | undefined> {
  return trx
    .insertInto('job_queue')
    .values({
      tenant_id: job.tenantId,
      owner_id: job.ownerId,
      type: job.type,
      payload: JSON.stringify(job.payload ?? {}),
      max_attempts: job.maxAttempts,
      priority: job.priority,
      run_at: job.runAt,
      idempotency_key: job.idempotencyKey ?? null,
      request_hash: job.requestHash ?? null,
    })
    .onConflict((oc) =>
      oc
        .expression(sql`tenant_id, ${KEY_OWNER}, idempotency_key`)
        .where('idempotency_key', 'is not', null)
        .doNothing(),
    )
    .returning(JOB_DOCUMENT_COLUMNS)
    .executeTakeFirst()
}

/** The owner's job under this key, with request_hash to tell a retry from another request. */
export function findJobByIdempotencyKey(
  trx: TenantTransaction,
  owner: { tenantId: string; ownerId: string },
  key: string,
) {
  return trx
    .selectFrom('job_queue')
    .select([...JOB_DOCUMENT_COLUMNS, 'request_hash'])
    .where('tenant_id', '=', owner.tenantId)
    .where(KEY_OWNER, '=', owner.ownerId)
    .where('idempotency_key', '=', key)
    .executeTakeFirst()
}

export function lockVisibleJob(trx: TenantTransaction, id: string) {
  return trx
    .selectFrom('job_queue')
    .select(JOB_DOCUMENT_COLUMNS)
    .where('id', '=', id)
    .forUpdate()
    .executeTakeFirst()
}

/**
 * Position in the list: created_at as UTC ISO 8601 text with microseconds (a JS Date would
 * drop them and the cursor would skip rows) and id.
 */
export interface ListCursor {
  createdAt: string
  id: string
}

export interface ListFilter {
  status?: JobStatus
  type?: string
  limit: number
  after?: ListCursor
}

export type ListedJob = JobDocumentRow & { cursor_created_at: string }

/** Newest first, keyset on (created_at, id): rows inserted while paging never shift a page. */
export function listVisibleJobs(trx: TenantTransaction, filter: ListFilter): Promise<ListedJob[]> {
  let query = trx
    .selectFrom('job_queue')
    .select(JOB_DOCUMENT_COLUMNS)
    // Formatted in UTC, whatever the session's TimeZone and DateStyle.
    .select(
      sql<string>`to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`.as(
        'cursor_created_at',
      ),
    )
    .orderBy('created_at', 'desc')
    .orderBy('id', 'desc')
    .limit(filter.limit)
  if (filter.status) query = query.where('status', '=', filter.status)
  if (filter.type) query = query.where('type', '=', filter.type)
  if (filter.after) {
    const { createdAt, id } = filter.after
    query = query.where((eb) =>
      eb(
        eb.refTuple('created_at', 'id'),
        '<',
        eb.tuple(sql<Date>`${createdAt}::timestamptz`, sql<string>`${id}::uuid`),
      ),
    )
  }
  return query.execute()
}

export function cancelQueuedJob(trx: TenantTransaction, id: string) {
  return trx
    .updateTable('job_queue')
    .set({ status: 'cancelled' })
    .where('id', '=', id)
    .returning(JOB_DOCUMENT_COLUMNS)
    .executeTakeFirstOrThrow()
}

export function requestCancel(trx: TenantTransaction, id: string) {
  return trx
    .updateTable('job_queue')
    .set({ cancel_requested: true })
    .where('id', '=', id)
    .returning(JOB_DOCUMENT_COLUMNS)
    .executeTakeFirstOrThrow()
}

/**
 * The event pipeline's batched read: many watched jobs in one query, across tenants (the
 * subscriptions were authorised by an RLS read when they opened). Runs as the service login.
 */
const FETCH_JOBS = `SELECT ${JOB_DOCUMENT_COLUMNS.map((c) => `"${c}"`).join(', ')}
  FROM job_queue WHERE id = ANY($1::uuid[])`

export function fetchJobsByIds(db: Db, ids: readonly string[]): Promise<JobDocumentRow[]> {
  return hotQuery<JobDocumentRow>(db, 'jobwire_fetch_jobs', FETCH_JOBS, [ids])
}

/** Visible jobs changed at or after `since`, oldest change first (tenant-feed resume). */
export function listChangedSince(
  trx: TenantTransaction,
  since: Date,
  limit: number,
): Promise<JobDocumentRow[]> {
  return trx
    .selectFrom('job_queue')
    .select(JOB_DOCUMENT_COLUMNS)
    .where('updated_at', '>=', since)
    .orderBy('updated_at', 'asc')
    .orderBy('id', 'asc')
    .limit(limit)
    .execute()
}
