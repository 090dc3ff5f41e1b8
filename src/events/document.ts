// Builds the job document (SPEC §6) from a row: snake_case, numbers as numbers, ISO 8601
// timestamps, `result` only when completed and `error` only when failed.
import type { JobDocument, JobError } from '../protocol/job.js'
import type { JobDocumentRow } from '../db/jobs.js'

export function toJobDocument(row: JobDocumentRow): JobDocument {
  return {
    id: row.id,
    type: row.type,
    status: row.status,
    progress: Number(row.progress),
    step: row.step,
    eta_seconds: row.eta_seconds === null ? null : Number(row.eta_seconds),
    result: row.status === 'completed' ? (row.result ?? null) : null,
    error: row.status === 'failed' ? ((row.error as JobError | null) ?? null) : null,
    attempts: Number(row.attempts),
    max_attempts: Number(row.max_attempts),
    cancel_requested: row.cancel_requested,
    version: Number(row.version),
    created_at: iso(row.created_at),
    updated_at: iso(row.updated_at),
    started_at: row.started_at === null ? null : iso(row.started_at),
    completed_at: row.completed_at === null ? null : iso(row.completed_at),
  }
}

function iso(value: Date | string): string {
  return (value instanceof Date ? value : new Date(value)).toISOString()
}
