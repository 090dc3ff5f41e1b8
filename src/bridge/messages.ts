// The Redis bridge's message shapes. Outbound: the `events` vocabulary of docs/contract.md §7, one
// JSON message per event, marked `origin: "jobwire"`. Inbound (legacy workers): progress, complete
// and failed reports, or Celery-style states, validated with zod and mapped to a row update.
import { z } from 'zod'
import type { TypedEvent } from '../events/typed-events.js'
import { DELETED_STATUS, deletedMessage } from '../protocol/stream-messages.js'

export const ORIGIN = 'jobwire'

export function channelFor(jobId: string): string {
  return `jobs:${jobId}:events`
}

export const CHANNEL_PATTERN = 'jobs:*:events'
const CHANNEL = /^jobs:([0-9a-fA-F-]{36}):events$/

export function jobIdFromChannel(channel: string): string | undefined {
  const id = CHANNEL.exec(channel)?.[1]
  return id && z.guid().safeParse(id).success ? id.toLowerCase() : undefined
}

export interface OutboundMessage {
  event: TypedEvent['event'] | 'end'
  data: Record<string, unknown>
  job: string
  version: number
  origin: typeof ORIGIN
}

/** A deleted job: event `end` with the data every stream sends (src/protocol/stream-messages.ts). */
export function deletionMessage(jobId: string, version: number): OutboundMessage {
  return {
    event: 'end',
    data: deletedMessage(jobId, version),
    job: jobId,
    version,
    origin: ORIGIN,
  }
}

export function outboundMessage(
  jobId: string,
  version: number,
  event: TypedEvent,
): OutboundMessage {
  return { event: event.event, data: event.data, job: jobId, version, origin: ORIGIN }
}

const eta = z.number().int().min(0).max(10_000_000)
const progress = z.number().min(0).max(100)
const step = z.string().max(1000)

const progressMessage = z.object({
  type: z.enum(['progress', 'progress-update']),
  progress: progress.optional(),
  step: step.optional(),
  currentStep: step.optional(),
  eta_seconds: eta.optional(),
  estimatedTimeRemaining: eta.optional(),
})
const completeMessage = z.object({
  type: z.enum(['complete', 'completed']),
  result: z.json().optional(),
})
const failedMessage = z.object({
  type: z.enum(['failed', 'error']),
  error: z.union([
    z.string().max(10_000),
    z.object({ message: z.string().max(10_000), code: z.string().max(200).optional() }),
  ]),
  errorCode: z.string().max(200).optional(),
})
const CELERY_STATES = [
  'PENDING',
  'RECEIVED',
  'STARTED',
  'PROGRESS',
  'RETRY',
  'SUCCESS',
  'FAILURE',
  'REVOKED',
] as const
const celeryMessage = z.object({
  status: z.enum(CELERY_STATES),
  result: z.json().optional(),
  meta: z.record(z.string(), z.json()).optional(),
  traceback: z.string().nullable().optional(),
})

/**
 * A deletion in the streams' shape, published by something other than jobwire: recognised and
 * ignored (a report never deletes a row; deleting is the application's, in SQL).
 */
const deletionReport = z.object({
  type: z.literal('end'),
  status: z.literal(DELETED_STATUS),
})

/** The same, in the bridge's own envelope ({event, data}) from another publisher. */
const deletionEnvelope = z.object({ event: z.literal('end'), data: deletionReport })

export const inboundSchema = z.union([
  deletionReport,
  deletionEnvelope,
  progressMessage,
  completeMessage,
  failedMessage,
  celeryMessage,
])

/** What an inbound report does to the row (arguments of jobwire_apply_external). */
export interface RowUpdate {
  status: 'queued' | 'running' | 'completed' | 'failed' | 'cancelled' | null
  progress: number | null
  step: string | null
  etaSeconds: number | null
  result: unknown
  error: { message: string; code: string | null } | null
}

const NONE: RowUpdate = {
  status: null,
  progress: null,
  step: null,
  etaSeconds: null,
  result: undefined,
  error: null,
}

export function toRowUpdate(message: z.output<typeof inboundSchema>): RowUpdate | undefined {
  if ('event' in message) return undefined // a deletion: nothing to apply
  if ('type' in message) {
    switch (message.type) {
      case 'end':
        return undefined
      case 'progress':
      case 'progress-update':
        return {
          ...NONE,
          progress: message.progress ?? null,
          step: message.step ?? message.currentStep ?? null,
          etaSeconds: message.eta_seconds ?? message.estimatedTimeRemaining ?? null,
        }
      case 'complete':
      case 'completed':
        return { ...NONE, status: 'completed', result: message.result ?? null }
      case 'failed':
      case 'error': {
        const error =
          typeof message.error === 'string'
            ? { message: message.error, code: message.errorCode ?? null }
            : {
                message: message.error.message,
                code: message.error.code ?? message.errorCode ?? null,
              }
        return { ...NONE, status: 'failed', error }
      }
    }
  }
  // Celery: PENDING/RECEIVED say nothing new; RETRY means the job runs again later.
  const meta = message.meta ?? {}
  const metaProgress =
    typeof meta.progress === 'number' && meta.progress >= 0 && meta.progress <= 100
      ? meta.progress
      : null
  const metaStep = typeof meta.step === 'string' ? meta.step.slice(0, 1000) : null
  switch (message.status) {
    case 'PENDING':
    case 'RECEIVED':
      return undefined
    case 'STARTED':
    case 'PROGRESS':
      return { ...NONE, status: 'running', progress: metaProgress, step: metaStep }
    case 'RETRY':
      return { ...NONE, status: 'queued', step: metaStep ?? 'retrying' }
    case 'SUCCESS':
      return { ...NONE, status: 'completed', result: message.result ?? null }
    case 'FAILURE':
      return {
        ...NONE,
        status: 'failed',
        error: {
          message: typeof message.result === 'string' ? message.result : 'task failed',
          code: 'FAILURE',
        },
      }
    case 'REVOKED':
      return { ...NONE, status: 'cancelled' }
  }
}
