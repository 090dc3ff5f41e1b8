// A job document for pure-logic tests: a queued `test` job at `version`, with overrides.
import type { JobDocument } from '../../src/protocol/job.js'

export function jobDocument(
  id: string,
  version: number,
  patch: Partial<JobDocument> = {},
): JobDocument {
  return {
    id,
    type: 'test',
    status: 'queued',
    progress: 0,
    step: null,
    eta_seconds: null,
    result: null,
    error: null,
    last_error: null,
    attempts: 0,
    max_attempts: 3,
    cancel_requested: false,
    version,
    created_at: '2026-01-01T00:00:00.000Z',
    updated_at: '2026-01-01T00:00:00.000Z',
    started_at: null,
    completed_at: null,
    ...patch,
  }
}
