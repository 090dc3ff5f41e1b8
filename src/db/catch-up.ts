// The event pipeline's catch-up read after a listener outage: jobs of the given tenants (or
// of every tenant) changed since a moment, oldest change first, bounded. Runs as the
// service login, like the hub's batched read (feeds filter by owner themselves).
import { sql } from 'kysely'
import type { Db } from './pool.js'
import { JOB_DOCUMENT_COLUMNS, type JobDocumentRow } from './jobs.js'

export function fetchJobsChangedSince(
  db: Db,
  tenants: readonly string[] | 'all',
  since: Date,
  limit: number,
): Promise<JobDocumentRow[]> {
  let query = db
    .selectFrom('job_queue')
    .select(JOB_DOCUMENT_COLUMNS)
    .where('updated_at', '>=', since)
    .orderBy('updated_at', 'asc')
    .limit(limit)
  if (tenants !== 'all')
    query = query.where('tenant_id', '=', sql<string>`ANY(${sql.val(tenants)}::uuid[])`)
  return query.execute()
}
