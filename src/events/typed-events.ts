// The `events` vocabulary existing frontends and Redis consumers use (docs/api.md,
// `?format=events`): connected, status-change, progress-update, step-change, complete, failed,
// cancelled. Derived from two consecutive documents, so it needs no extra state.
import type { JobDocument } from '../protocol/job.js'

export type TypedEventName =
  | 'connected'
  | 'progress-update'
  | 'step-change'
  | 'complete'
  | 'failed'
  | 'cancelled'
  | 'status-change'

export interface TypedEvent {
  event: TypedEventName
  data: Record<string, unknown>
}

export function progressUpdate(doc: JobDocument): TypedEvent {
  return {
    event: 'progress-update',
    data: {
      jobId: doc.id,
      status: doc.status,
      progress: doc.progress,
      currentStep: doc.step,
      estimatedTimeRemaining: doc.eta_seconds,
    },
  }
}

/** What happened between `previous` (undefined: the client knows nothing yet) and `doc`. */
export function typedEvents(previous: JobDocument | undefined, doc: JobDocument): TypedEvent[] {
  const events: TypedEvent[] = []
  if (!previous || previous.status !== doc.status) {
    if (doc.status === 'queued' || doc.status === 'running') {
      // attempts and the last error: a job back in the queue after a failed attempt says
      // which attempt comes next and why the last one failed.
      events.push({
        event: 'status-change',
        data: {
          jobId: doc.id,
          status: doc.status,
          previousStatus: previous?.status ?? null,
          attempts: doc.attempts,
          maxAttempts: doc.max_attempts,
          lastError: doc.last_error?.message ?? null,
          lastErrorCode: doc.last_error?.code ?? null,
        },
      })
    }
  }
  if (previous && previous.step !== doc.step) {
    events.push({
      event: 'step-change',
      data: { jobId: doc.id, step: doc.step, previousStep: previous.step },
    })
  }
  if (
    !previous ||
    previous.progress !== doc.progress ||
    previous.step !== doc.step ||
    previous.eta_seconds !== doc.eta_seconds
  ) {
    events.push(progressUpdate(doc))
  }
  if (!previous || previous.status !== doc.status) {
    if (doc.status === 'completed')
      events.push({ event: 'complete', data: { jobId: doc.id, result: doc.result } })
    if (doc.status === 'failed') {
      events.push({
        event: 'failed',
        data: {
          jobId: doc.id,
          error: doc.error?.message ?? null,
          errorCode: doc.error?.code ?? null,
        },
      })
    }
    if (doc.status === 'cancelled') events.push({ event: 'cancelled', data: { jobId: doc.id } })
  }
  return events
}
