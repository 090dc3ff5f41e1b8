// Opening a watch on one job for a request, race-free: reserve the job in the hub, then read
// it under the caller's RLS (the read is the authorisation), then seed the hub with it. A
// change committed between the two is applied to the job's state instead of being lost, but
// reaches nobody: the transport attaches only after the read allowed it, and starts from the
// newest of the two documents, so it is never sent twice.
import type { Db } from '../db/pool.js'
import { readVisibleJob, type Principal } from '../db/tenant-transaction.js'
import { JobNotFoundError } from '../errors.js'
import { toJobDocument } from '../events/document.js'
import type { Hub, PendingWatch } from '../events/hub.js'
import type { StreamRegistry } from '../transports/stream-registry.js'
import { assertCanRead } from './auth.js'
import type { StreamSlots } from './stream-slots.js'

export interface StreamDeps {
  db: Db
  hub: Hub
  registry: StreamRegistry
  /** The concurrent-stream caps: every stream takes its slots before its authorising read. */
  slots: StreamSlots
}

/**
 * Opens a watch on one job for a caller, race-free: reserve the job in the hub, read it under
 * the caller's RLS (the read is the authorisation), seed the hub with the row. Resolves to a
 * watch the transport attaches to once it is ready to send (its first document is then
 * `state.current`, the newest of the read and of anything that arrived meanwhile); rejects
 * with JobNotFoundError (or ForbiddenError for a watch token's other job) after cancelling the
 * reservation. Until attach() nothing about the job can reach the caller.
 */
export async function subscribeJob(
  deps: StreamDeps,
  principal: Principal,
  jobId: string,
): Promise<PendingWatch> {
  assertCanRead(principal, jobId)
  const watch = deps.hub.reserve(jobId)
  try {
    const row = await readVisibleJob(deps.db, principal, jobId)
    if (!row) throw new JobNotFoundError(jobId)
    deps.hub.seed(jobId, {
      doc: toJobDocument(row),
      tenantId: row.tenant_id,
      ownerId: row.owner_id,
    })
    return watch
  } catch (error) {
    watch.cancel()
    throw error
  }
}

/** Last-Event-ID (header or ?lastEventId=) as a version; garbage means "none" (a snapshot). */
export function parseVersion(value: unknown): number | undefined {
  if (typeof value !== 'string' || !/^\d{1,15}$/.test(value.trim())) return undefined
  const n = Number(value.trim())
  return n >= 1 ? n : undefined
}
