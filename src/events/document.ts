// Builds the job document (docs/api.md, "The job document") from a row: snake_case, numbers as
// numbers, ISO 8601 timestamps, `result` only when completed and `error` only when failed.
// `last_error` is the row's error column whatever the status, so a job waiting for its retry
// says why (docs/decisions.md, "The error of a retried job"); a completed job shows none, and
// a terminal job no time left, also for rows written before the trigger enforced both
// (migrations/1764000000006_values-users-see.sql).
import { isTerminalStatus, type JobDocument, type JobError } from '../protocol/job.js'
import type { JobDocumentRow } from '../db/jobs.js'

export function toJobDocument(row: JobDocumentRow): JobDocument {
  const error = (row.error as JobError | null) ?? null
  return {
    id: row.id,
    type: row.type,
    status: row.status,
    progress: Number(row.progress),
    step: row.step,
    eta_seconds: isTerminalStatus(row.status)
      ? 0
      : row.eta_seconds === null
        ? null
        : Number(row.eta_seconds),
    result: row.status === 'completed' ? (row.result ?? null) : null,
    error: row.status === 'failed' ? error : null,
    last_error: row.status === 'completed' ? null : error,
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
