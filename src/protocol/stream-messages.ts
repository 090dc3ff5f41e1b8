// The messages of the multiplexed streams (SSE `/v1/events` data, and WebSocket `/v1/ws`), spelled
// once for server and client. Every per-job message names its job and version (docs/contract.md
// §6). `Patch` is the RFC 6902 operation type of whoever reads or writes the message.

import type { JobDocument } from './job.js'

export type JobStreamMessage<Patch = unknown> =
  | { type: 'snapshot'; job: string; version: number; doc: JobDocument }
  | { type: 'patch'; job: string; version: number; patch: Patch[] }
  | { type: 'end'; job: string; version: number; status: string }
  | {
      type: 'error'
      job?: string
      status: number
      detail: string
      /** Several jobs of one request that could not be subscribed (`job` is then unset). */
      jobs?: Array<{ job: string; status: number; detail: string }>
    }
  | { type: 'reset'; detail: string }

/**
 * The SSE event names of `/v1/events` that are not a message `type` of their own. Never
 * `error`: EventSource hands an event named `error` to `onerror`, where a page handles a lost
 * connection (docs/api.md, "Many jobs on one stream").
 */
export const SSE_EVENT = {
  /** First on `?jobs=`: the listed jobs that cannot be watched, each with its own status. */
  unavailable: 'unavailable',
} as const

/** SSE `/v1/events?jobs=` only, before any other event: the jobs that cannot be watched. */
export interface UnavailableMessage {
  type: typeof SSE_EVENT.unavailable
  /** The highest of the jobs' statuses (400 < 403 < 404). */
  status: number
  detail: string
  jobs: Array<{ job: string; status: number; detail: string }>
}

/**
 * A deleted job, in the one shape every transport uses (docs/api.md, "Deleted jobs"): SSE
 * event `end` with this data on a single job's stream, `/v1/events` (jobs and the tenant
 * feed) and WebSocket, and `{event: "end", data: <this>}` on the Redis bridge. `version`
 * is the last version the server had.
 */
export const DELETED_STATUS = 'deleted'

export function deletedMessage(
  job: string,
  version: number,
): { type: 'end'; job: string; version: number; status: typeof DELETED_STATUS } {
  return { type: 'end', job, version, status: DELETED_STATUS }
}

/** SSE `/v1/events?jobs=` only: every job has ended, the stream closes. */
export interface StreamEndMessage {
  type: 'end'
  reason: string
}
