// Parses the job_queue NOTIFY payload ({id, tenant_id, owner_id, version, status, ts}).
// Defensive and cheap: a hand-written check (no schema library on a path that takes 100k+
// notifications/s); anything malformed returns undefined and is counted by the caller.

export const CHANNEL = 'jobwire'

export interface JobNotification {
  id: string
  tenantId: string
  ownerId: string | null
  version: number
  /** A job status, or `deleted` when the row was deleted. */
  status: string
  /** The writer's clock when the trigger ran, epoch milliseconds (for latency metrics). */
  ts: number | undefined
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

export function parseNotification(payload: string | undefined): JobNotification | undefined {
  if (payload === undefined || payload.length > 8000) return undefined
  let value: unknown
  try {
    value = JSON.parse(payload)
  } catch {
    return undefined
  }
  if (typeof value !== 'object' || value === null) return undefined
  const v = value as Record<string, unknown>
  if (typeof v.id !== 'string' || !UUID.test(v.id)) return undefined
  if (typeof v.tenant_id !== 'string' || !UUID.test(v.tenant_id)) return undefined
  if (v.owner_id !== null && typeof v.owner_id !== 'string') return undefined
  if (typeof v.version !== 'number' || !Number.isSafeInteger(v.version) || v.version < 1)
    return undefined
  if (typeof v.status !== 'string') return undefined
  return {
    id: v.id,
    tenantId: v.tenant_id,
    ownerId: v.owner_id,
    version: v.version,
    status: v.status,
    ts: typeof v.ts === 'number' && Number.isFinite(v.ts) ? v.ts : undefined,
  }
}
