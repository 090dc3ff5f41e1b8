// Opening a watch on one job for a request, race-free: reserve the job in the hub, then read
// it under the caller's RLS (the read is the authorisation), then seed the hub with it. A
// change committed between the two is applied to the job's state instead of being lost, but
// reaches nobody: the transport attaches only after the read allowed it, and starts from the
// newest of the two documents, so it is never sent twice.
import type { Db } from '../db/pool.js'
import { readVisibleJob, type Principal } from '../db/tenant-transaction.js'
import { JobNotFoundError, TooManyRequestsError } from '../errors.js'
import { toJobDocument } from '../events/document.js'
import type { Hub, PendingWatch } from '../events/hub.js'
import type { StreamRegistry } from '../transports/stream-registry.js'
import { assertCanRead } from './auth.js'

export interface StreamDeps {
  db: Db
  hub: Hub
  registry: StreamRegistry
  limits: { maxStreamsPerUser: number; maxStreamsPerTenant: number }
}

export function userKeyOf(principal: Principal): string {
  return `${principal.tenantId}:${principal.userId}`
}

/** Streams past the cap check whose opening still awaits a read, per registry and key. */
const opening = new WeakMap<StreamRegistry, Map<string, number>>()

/** 429 when the caller already holds its share of concurrent streams (0 disables a cap). */
function assertStreamCapacity(deps: StreamDeps, principal: Principal, onReject?: () => void): void {
  const { user, tenant } = deps.registry.countFor(principal.tenantId, userKeyOf(principal))
  const pending = opening.get(deps.registry)
  const users = user + (pending?.get(`u:${userKeyOf(principal)}`) ?? 0)
  const tenants = tenant + (pending?.get(`t:${principal.tenantId}`) ?? 0)
  const { maxStreamsPerUser, maxStreamsPerTenant } = deps.limits
  if (maxStreamsPerUser > 0 && users >= maxStreamsPerUser) {
    onReject?.()
    throw new TooManyRequestsError(
      `You already have ${users} open streams (the limit is ${maxStreamsPerUser}); close one first.`,
      5,
    )
  }
  if (maxStreamsPerTenant > 0 && tenants >= maxStreamsPerTenant) {
    onReject?.()
    throw new TooManyRequestsError(
      `Your tenant already has ${tenants} open streams (the limit is ${maxStreamsPerTenant}).`,
      5,
    )
  }
}

/**
 * The cap check for every stream (429 over a cap), then holds the slot until release() —
 * call it once the stream is in the registry or has failed — so that concurrent opens,
 * each awaiting its authorising read, cannot all pass the check.
 */
export function reserveStream(
  deps: StreamDeps,
  principal: Principal,
  onReject?: () => void,
): () => void {
  assertStreamCapacity(deps, principal, onReject)
  let pending = opening.get(deps.registry)
  if (!pending) opening.set(deps.registry, (pending = new Map()))
  const keys = [`u:${userKeyOf(principal)}`, `t:${principal.tenantId}`]
  for (const key of keys) pending.set(key, (pending.get(key) ?? 0) + 1)
  let isReleased = false
  return () => {
    if (isReleased) return
    isReleased = true
    for (const key of keys) {
      const n = (pending.get(key) ?? 0) - 1
      if (n > 0) pending.set(key, n)
      else pending.delete(key)
    }
  }
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
