// Every header, query parameter and media type the HTTP API speaks, spelled once.

export const API_PREFIX = '/v1'

export const HEADER = {
  idempotencyKey: 'idempotency-key',
  lastEventId: 'last-event-id',
  requestId: 'x-request-id',
  timedOut: 'jobwire-timed-out',
  retryAfter: 'retry-after',
} as const

export const QUERY = {
  token: 'token',
  lastEventId: 'lastEventId',
  stream: 'stream',
  format: 'format',
  timeout: 'timeout',
  since: 'since',
  jobs: 'jobs',
} as const

export const MEDIA_TYPE = {
  json: 'application/json',
  problem: 'application/problem+json',
  eventStream: 'text/event-stream',
} as const

/** Problem `type` URIs are `${PROBLEM_BASE}<slug>`; docs/errors.md lists every slug. */
export const PROBLEM_BASE = 'https://jobwire.dev/problems/'
