// The compatibility streams' messages (docs/compat.md), built from two consecutive job
// documents like every other format, so they need no state of their own. Both vocabularies
// are unnamed SSE messages (`data:` only, for EventSource.onmessage) that carry the
// version as their id, so a reconnecting EventSource resumes (Last-Event-ID) like on v1.
//   api-jobs  GET /api/jobs/:id/events       {status, progress (0.0–1.0), step}
//   api-v1    GET /api/v1/jobs/:id/stream    {type, data}: connected, step-change,
//                                            progress-update, complete, failed
import { apiJobsEvent, errorCodeOf, errorMessageOf, type ApiJobsEvent } from '../protocol/compat.js'
import type { JobDocument } from '../protocol/job.js'

/** How a stream with its own vocabulary frames a job's documents (SseJobStream `frames`). */
export interface SseFrames {
  /** Names the vocabulary: frames are shared per (key, base version) between streams. */
  readonly key: string
  /** What a client that has `base` (undefined: nothing) gets first. */
  first(base: JobDocument | undefined, doc: JobDocument, connectionId: string): Buffer
  /** The messages from `base` to `doc`; empty when this vocabulary sees no difference. */
  change(base: JobDocument, doc: JobDocument): Buffer
  /** The job was deleted: the last bytes before the stream closes. */
  gone(last: JobDocument): Buffer
}

const EMPTY = Buffer.alloc(0)

/** One unnamed message: `id:` and `data:` only. */
export function sseData(data: unknown, id: number): Buffer {
  return Buffer.from(`id: ${id}\ndata: ${JSON.stringify(data)}\n\n`)
}

function sameEvent(a: ApiJobsEvent, b: ApiJobsEvent): boolean {
  return a.status === b.status && a.progress === b.progress && a.step === b.step
}

/** `api-jobs` admin stream: the current state at once, then each change of it. */
export const API_JOBS_FRAMES: SseFrames = {
  key: 'api-jobs',
  first: (_base, doc) => sseData(apiJobsEvent(doc), doc.version),
  change(base, doc) {
    const event = apiJobsEvent(doc)
    return sameEvent(apiJobsEvent(base), event) ? EMPTY : sseData(event, doc.version)
  },
  gone: () => EMPTY,
}

export type ApiV1MessageType =
  'connected' | 'progress-update' | 'step-change' | 'complete' | 'failed'

export interface ApiV1Message {
  type: ApiV1MessageType
  data: Record<string, unknown>
}

/**
 * The typed messages from `previous` (undefined: the client knows nothing yet) to `doc`, in
 * this order: step-change (the job started, or its step changed), progress-update,
 * complete or failed (a cancelled job is `failed` with errorCode "cancelled").
 */
export function apiV1Messages(previous: JobDocument | undefined, doc: JobDocument): ApiV1Message[] {
  const messages: ApiV1Message[] = []
  const started = doc.status === 'running' && previous?.status !== 'running'
  const stepChanged = previous !== undefined && previous.step !== doc.step
  if (started || stepChanged)
    messages.push({
      type: 'step-change',
      data: { status: doc.status, step: doc.step, previousStep: previous?.step ?? null },
    })
  if (
    !previous ||
    previous.progress !== doc.progress ||
    previous.step !== doc.step ||
    previous.eta_seconds !== doc.eta_seconds
  )
    messages.push({
      type: 'progress-update',
      data: {
        progress: doc.progress,
        currentStep: doc.step,
        estimatedTimeRemaining: doc.eta_seconds,
      },
    })
  if (previous?.status !== doc.status) {
    if (doc.status === 'completed')
      messages.push({ type: 'complete', data: { result: doc.result } })
    if (doc.status === 'failed' || doc.status === 'cancelled')
      messages.push({
        type: 'failed',
        data: { error: errorMessageOf(doc), errorCode: errorCodeOf(doc) },
      })
  }
  return messages
}

function frame(messages: ApiV1Message[], version: number): Buffer {
  return messages.length === 0
    ? EMPTY
    : Buffer.concat(messages.map((message) => sseData(message, version)))
}

/** `api-v1` typed stream: `connected` first, then the messages of each change. */
export const API_V1_FRAMES: SseFrames = {
  key: 'api-v1',
  first: (base, doc, connectionId) =>
    frame(
      [{ type: 'connected', data: { connectionId, jobId: doc.id } }, ...apiV1Messages(base, doc)],
      doc.version,
    ),
  change: (base, doc) => frame(apiV1Messages(base, doc), doc.version),
  gone: (last) =>
    frame(
      [{ type: 'failed', data: { error: 'The job was deleted.', errorCode: 'deleted' } }],
      last.version,
    ),
}
