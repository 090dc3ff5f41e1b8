// The job document: what every endpoint and every stream returns for a job (docs/contract.md §6).
// Shared by the server, the client library and the tests; keep it free of imports.

export const JOB_STATUSES = ['queued', 'running', 'completed', 'failed', 'cancelled'] as const
export type JobStatus = (typeof JOB_STATUSES)[number]

export const TERMINAL_STATUSES: ReadonlySet<JobStatus> = new Set([
  'completed',
  'failed',
  'cancelled',
])

export function isTerminalStatus(status: string): boolean {
  return TERMINAL_STATUSES.has(status as JobStatus)
}

export interface JobError {
  message: string
  code?: string | null
  [key: string]: unknown
}

/**
 * snake_case (docs/api.md, "The job document"). `result` only when completed, `error` only when
 * failed; `last_error` is the latest failed attempt's error whatever the status, null once the
 * job completed: it is what a job waiting for its retry shows. `progress` has at most 2
 * decimals; `eta_seconds` is 0 for a terminal job.
 */
export interface JobDocument {
  id: string
  type: string
  status: JobStatus
  progress: number
  step: string | null
  eta_seconds: number | null
  result: unknown
  error: JobError | null
  last_error: JobError | null
  attempts: number
  max_attempts: number
  cancel_requested: boolean
  version: number
  created_at: string
  updated_at: string
  started_at: string | null
  completed_at: string | null
}

export interface JobList {
  data: JobDocument[]
  next_cursor: string | null
}
