// Builds a job's new document from a notification that carries the change's small fields
// (src/events/notification.ts `small`) and the document of the version just before it, so
// the hub delivers the change without reading the row back (docs/decisions.md, "Changes
// built from the notification"). The new document goes through toJobDocument() like a read
// row, so it is the document a read would give, byte for byte: what the notification does not
// carry is what the change left as it was (type, result, error — the trigger sends `small`
// only then), and a job made completed or failed is always read.
import type { JobDocumentRow } from '../db/jobs.js'
import type { JobDocument } from '../protocol/job.js'
import { toJobDocument } from './document.js'
import type { JobNotification } from './notification.js'

/**
 * The document of version `n.version`, or undefined when it cannot be built: no small
 * fields, or `previous` is not the version just before it (a change in between is missing).
 * A new job (version 1, its type in the notification) needs no previous document.
 */
export function documentFromNotification(
  n: JobNotification,
  previous: JobDocument | undefined,
): JobDocument | undefined {
  const small = n.small
  if (!small || n.status === 'deleted') return undefined
  const isNew = small.type !== null
  if (isNew ? n.version !== 1 : previous?.version !== n.version - 1) return undefined
  const row: JobDocumentRow = {
    id: n.id,
    tenant_id: n.tenantId,
    owner_id: n.ownerId,
    type: isNew ? small.type! : previous!.type,
    status: n.status as JobDocumentRow['status'],
    progress: small.progress,
    step: small.step,
    eta_seconds: small.eta_seconds,
    // Unchanged by the change, and never completed (that is always read).
    result: null,
    error: isNew ? null : previous!.last_error,
    attempts: small.attempts,
    max_attempts: small.max_attempts,
    cancel_requested: small.cancel_requested,
    version: String(n.version),
    created_at: new Date(small.created_at),
    updated_at: new Date(small.updated_at),
    started_at: small.started_at === null ? null : new Date(small.started_at),
    completed_at: small.completed_at === null ? null : new Date(small.completed_at),
  }
  return toJobDocument(row)
}
