// Opening a watch on one job for a request, race-free: reserve the job in the hub, then read
// it under the caller's RLS (the read is the authorisation), then seed the hub with it. A
// change committed between the two is applied to the job's state instead of being lost, but
// reaches nobody: the transport attaches only after the read allowed it, and starts from the
// newest of the two documents, so it is never sent twice.
import type { Db } from '../db/pool.js'
import { readVisibleJob, readVisibleJobs, type Principal } from '../db/tenant-transaction.js'
import type { AppError } from '../errors.js'
import { JobNotFoundError, TooManyRequestsError, ValidationError } from '../errors.js'
import { toJobDocument } from '../events/document.js'
import type { Hub, PendingWatch } from '../events/hub.js'
import type { JobSubscription, Multiplexer } from '../transports/multiplexer.js'
import type { StreamRegistry } from '../transports/stream-registry.js'
import { assertCanRead } from './auth.js'
import { jobIdSchema } from './schemas.js'
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

/**
 * What authorising `jobs` jobs in one batched read costs, in requests of the rate limit:
 * measured, one read of 200 jobs took 0.7–1.0 ms, the work of 7–14 single-job reads
 * (docs/decisions.md, "A subscription counts what its read costs").
 */
export function subscriptionCost(jobs: number): number {
  return Math.max(1, Math.ceil(jobs / 20))
}

/** A job of a multiplexed subscription that cannot be watched, and why. */
export interface JobRefusal {
  job: string
  error: AppError
}

export interface JobsSubscription {
  /** Authorised jobs, each prepared on the multiplexer: start(sub, watch, resumeFrom) them. */
  authorised: Array<{ sub: JobSubscription; watch: PendingWatch }>
  refused: JobRefusal[]
}

/**
 * Authorises many jobs for one multiplexed connection (`/v1/events?jobs=`, a WebSocket
 * `subscribe`) with one RLS read, race-free like subscribeJob. Refused, each with its own
 * error: a malformed id (400), a watch token's other jobs (403), jobs past the connection's
 * `maxJobs` (429), jobs missing or not visible (404). Ids the multiplexer already has are
 * skipped. The others are prepared on the multiplexer before the read, so an unsubscribe
 * meanwhile cancels them. When the read itself fails, everything is cancelled and it throws.
 */
export async function subscribeJobs(
  deps: StreamDeps,
  principal: Principal,
  mux: Multiplexer,
  rawIds: readonly string[],
  maxJobs: number,
): Promise<JobsSubscription> {
  const refused: JobRefusal[] = []
  const pending = new Map<string, { sub: JobSubscription; watch: PendingWatch }>()
  for (const raw of rawIds) {
    const parsed = jobIdSchema.safeParse(raw)
    if (!parsed.success) {
      refused.push({ job: raw, error: new ValidationError('Not a job id (expected a UUID).') })
      continue
    }
    const id = parsed.data
    if (mux.has(id) || pending.has(id)) continue
    try {
      assertCanRead(principal, id)
    } catch (error) {
      refused.push({ job: id, error: error as AppError })
      continue
    }
    if (mux.reserved >= maxJobs) {
      refused.push({
        job: id,
        error: new TooManyRequestsError(`A connection may watch at most ${maxJobs} jobs.`, 1),
      })
      continue
    }
    pending.set(id, { sub: mux.prepare(id), watch: deps.hub.reserve(id) })
  }
  let rows
  try {
    rows = await readVisibleJobs(deps.db, principal, [...pending.keys()])
  } catch (error) {
    for (const { sub, watch } of pending.values()) {
      mux.abandon(sub)
      watch.cancel()
    }
    throw error
  }
  const authorised: JobsSubscription['authorised'] = []
  for (const row of rows) {
    const entry = pending.get(row.id)
    if (!entry) continue
    pending.delete(row.id)
    deps.hub.seed(row.id, {
      doc: toJobDocument(row),
      tenantId: row.tenant_id,
      ownerId: row.owner_id,
    })
    authorised.push(entry)
  }
  for (const [id, { sub, watch }] of pending) {
    mux.abandon(sub)
    watch.cancel()
    refused.push({ job: id, error: new JobNotFoundError(id) })
  }
  return { authorised, refused }
}

/** Last-Event-ID (header or ?lastEventId=) as a version; garbage means "none" (a snapshot). */
export function parseVersion(value: unknown): number | undefined {
  if (typeof value !== 'string' || !/^\d{1,15}$/.test(value.trim())) return undefined
  const n = Number(value.trim())
  return n >= 1 ? n : undefined
}
