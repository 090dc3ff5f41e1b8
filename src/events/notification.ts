// Parses the job_queue NOTIFY payload ({id, tenant_id, owner_id, version, status, ts, d}).
// `d`, when present, holds the small fields of a change the hub can apply without reading the
// row (migrations/1764000000009_notify-small-changes.sql). Defensive and cheap: a
// hand-written check (no schema library on a path that takes 100k+ notifications/s); anything
// malformed returns undefined and is counted by the caller. A malformed `d` alone only drops
// `d`: the hub then reads the row, as it always could.

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
  /** The change's small fields, when the document can be built from them and the previous one. */
  small?: SmallChange
}

/** Document fields a notification carries; `type` and `created_at` only for a new job. */
export interface SmallChange {
  type: string | null
  progress: number
  step: string | null
  eta_seconds: number | null
  attempts: number
  max_attempts: number
  cancel_requested: boolean
  created_at: string
  updated_at: string
  started_at: string | null
  completed_at: string | null
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
  const small = parseSmallChange(v.d)
  return {
    id: v.id,
    tenantId: v.tenant_id,
    ownerId: v.owner_id,
    version: v.version,
    status: v.status,
    ts: typeof v.ts === 'number' && Number.isFinite(v.ts) ? v.ts : undefined,
    ...(small ? { small } : {}),
  }
}

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/

const isCount = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x)
const isTime = (x: unknown): x is string => typeof x === 'string' && ISO.test(x)
const isTextOrNull = (x: unknown): x is string | null => x === null || typeof x === 'string'

function parseSmallChange(value: unknown): SmallChange | undefined {
  if (typeof value !== 'object' || value === null) return undefined
  const d = value as Record<string, unknown>
  const ok =
    isTextOrNull(d.type) &&
    typeof d.progress === 'number' &&
    Number.isFinite(d.progress) &&
    isTextOrNull(d.step) &&
    (d.eta_seconds === null || isCount(d.eta_seconds)) &&
    isCount(d.attempts) &&
    isCount(d.max_attempts) &&
    typeof d.cancel_requested === 'boolean' &&
    isTime(d.created_at) &&
    isTime(d.updated_at) &&
    (d.started_at === null || isTime(d.started_at)) &&
    (d.completed_at === null || isTime(d.completed_at))
  return ok ? (d as unknown as SmallChange) : undefined
}
