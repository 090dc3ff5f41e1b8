// The compatibility routes' names and wire shapes, spelled once (docs/compat.md): the route
// sections COMPAT_ROUTES turns on, each system's status words and the bodies of its polls,
// all built from the job document. Pure functions of a document; the stream messages built
// from them are in src/transports/compat-formats.ts.
import type { JobDocument, JobStatus } from './job.js'

/** The sections of COMPAT_ROUTES, each a set of routes (docs/compat.md). */
export const COMPAT_SECTIONS = ['jobs', 'api-jobs', 'api-queue', 'api-v1'] as const
export type CompatSection = (typeof COMPAT_SECTIONS)[number]

/** `api-jobs` polling: four words; a cancelled job reads as failed (docs/decisions.md). */
export type ApiJobsPollStatus = 'pending' | 'processing' | 'completed' | 'failed'
/** `api-jobs` admin stream: the same four states, with the stream's own word for waiting. */
export type ApiJobsEventStatus = 'queued' | 'processing' | 'completed' | 'failed'

/** What a cancelled job says where the vocabulary has no word for it. */
export const CANCELLED_MESSAGE = 'The job was cancelled.'
export const CANCELLED_CODE = 'cancelled'
/** The `step` of the admin stream while the job has none. */
export const DEFAULT_STEP = 'initializing'

const POLL_STATUS: Record<JobStatus, ApiJobsPollStatus> = {
  queued: 'pending',
  running: 'processing',
  completed: 'completed',
  failed: 'failed',
  cancelled: 'failed',
}

const EVENT_STATUS: Record<JobStatus, ApiJobsEventStatus> = {
  queued: 'queued',
  running: 'processing',
  completed: 'completed',
  failed: 'failed',
  cancelled: 'failed',
}

export function apiJobsPollStatus(status: JobStatus): ApiJobsPollStatus {
  return POLL_STATUS[status]
}

export function apiJobsEventStatus(status: JobStatus): ApiJobsEventStatus {
  return EVENT_STATUS[status]
}

/** The error message of a failed or cancelled job; null otherwise. */
export function errorMessageOf(doc: JobDocument): string | null {
  if (doc.status === 'cancelled') return CANCELLED_MESSAGE
  if (doc.status !== 'failed') return null
  return doc.error?.message ?? 'The job failed.'
}

/** The error code of a failed or cancelled job; null otherwise (or when the worker gave none). */
export function errorCodeOf(doc: JobDocument): string | null {
  if (doc.status === 'cancelled') return CANCELLED_CODE
  return doc.status === 'failed' ? (doc.error?.code ?? null) : null
}

/** jobwire's progress (0–100) as a fraction (0.0–1.0), 4 decimals at most. */
export function progressFraction(progress: number): number {
  return Math.round(progress * 100) / 10_000
}

export interface ApiJobsBody {
  id: string
  type: string
  status: ApiJobsPollStatus
  created_at: string
  result?: unknown
  error?: string
  completed_at?: string | null
}

/** `GET /api/jobs/:id`: `result` and `completed_at` when completed, `error` when failed. */
export function apiJobsBody(doc: JobDocument): ApiJobsBody {
  const status = apiJobsPollStatus(doc.status)
  const body: ApiJobsBody = { id: doc.id, type: doc.type, status, created_at: doc.created_at }
  if (status === 'completed') {
    body.result = doc.result
    body.completed_at = doc.completed_at
  } else if (status === 'failed') {
    body.error = errorMessageOf(doc)!
    body.completed_at = doc.completed_at
  }
  return body
}

export interface ApiJobsEvent {
  status: ApiJobsEventStatus
  progress: number
  step: string
}

/** One message of `GET /api/jobs/:id/events`. A completed job shows progress 1.0. */
export function apiJobsEvent(doc: JobDocument): ApiJobsEvent {
  return {
    status: apiJobsEventStatus(doc.status),
    progress: doc.status === 'completed' ? 1 : progressFraction(doc.progress),
    step: doc.step ?? DEFAULT_STEP,
  }
}

export interface ApiQueueBody {
  task_id: string
  status: JobStatus
  result: unknown
  progress: number
  created_at: string
  completed_at: string | null
}

/** `GET /api/queue/poll/:id` (and `/wait`): jobwire's status words, progress 0–100. */
export function apiQueueBody(doc: JobDocument): ApiQueueBody {
  return {
    task_id: doc.id,
    status: doc.status,
    result: doc.status === 'completed' ? doc.result : null,
    progress: doc.progress,
    created_at: doc.created_at,
    completed_at: doc.completed_at,
  }
}

export interface ApiV1StatusBody {
  jobId: string
  status: JobStatus
  progress: number
  currentStep: string | null
  estimatedTimeRemaining: number | null
  result: unknown
  error: string | null
  errorCode: string | null
  createdAt: string
  completedAt: string | null
}

/** `GET /api/v1/jobs/:id/status`: the typed stream's fields, camelCase, in one body. */
export function apiV1StatusBody(doc: JobDocument): ApiV1StatusBody {
  return {
    jobId: doc.id,
    status: doc.status,
    progress: doc.progress,
    currentStep: doc.step,
    estimatedTimeRemaining: doc.eta_seconds,
    result: doc.status === 'completed' ? doc.result : null,
    error: errorMessageOf(doc),
    errorCode: errorCodeOf(doc),
    createdAt: doc.created_at,
    completedAt: doc.completed_at,
  }
}
