// Status names that existing frontends already use, derived from a job document:
//
//   jobwire status            simple        Celery     label
//   queued, attempts = 0      queued        PENDING    Queued
//   queued, attempts > 0      queued        RETRY      Retrying
//   running                   processing    STARTED    Running (Cancelling when asked to stop)
//   completed                 completed     SUCCESS    Completed
//   failed                    failed        FAILURE    Failed
//   cancelled                 failed        REVOKED    Cancelled
import type { JobDocument } from '../protocol/job.js'

export type LegacyStatus = 'queued' | 'processing' | 'completed' | 'failed'
export type CeleryState = 'PENDING' | 'STARTED' | 'RETRY' | 'SUCCESS' | 'FAILURE' | 'REVOKED'

type StatusFields = Pick<JobDocument, 'status' | 'attempts'> &
  Partial<Pick<JobDocument, 'cancel_requested'>>

/** queued / processing / completed / failed (a cancelled job counts as failed). */
export function toLegacyStatus(doc: StatusFields): LegacyStatus
/** Celery's task states: PENDING, STARTED, RETRY, SUCCESS, FAILURE, REVOKED. */
export function toLegacyStatus(doc: StatusFields, vocabulary: 'celery'): CeleryState
export function toLegacyStatus(
  doc: StatusFields,
  vocabulary: 'simple' | 'celery' = 'simple',
): LegacyStatus | CeleryState {
  return vocabulary === 'celery' ? toCeleryState(doc) : toSimpleStatus(doc)
}

function toSimpleStatus(doc: StatusFields): LegacyStatus {
  switch (doc.status) {
    case 'queued':
      return 'queued'
    case 'running':
      return 'processing'
    case 'completed':
      return 'completed'
    case 'failed':
    case 'cancelled':
      return 'failed'
  }
}

export function toCeleryState(doc: StatusFields): CeleryState {
  switch (doc.status) {
    case 'queued':
      return doc.attempts > 0 ? 'RETRY' : 'PENDING'
    case 'running':
      return 'STARTED'
    case 'completed':
      return 'SUCCESS'
    case 'failed':
      return 'FAILURE'
    case 'cancelled':
      return 'REVOKED'
  }
}

/** A short human label for a status badge. */
export function statusLabel(doc: StatusFields): string {
  switch (doc.status) {
    case 'queued':
      return doc.attempts > 0 ? 'Retrying' : 'Queued'
    case 'running':
      return doc.cancel_requested ? 'Cancelling' : 'Running'
    case 'completed':
      return 'Completed'
    case 'failed':
      return 'Failed'
    case 'cancelled':
      return 'Cancelled'
  }
}
