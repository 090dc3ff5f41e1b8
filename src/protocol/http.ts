// Every header, query parameter and media type the HTTP API speaks, spelled once.

export const API_PREFIX = '/v1'

export const HEADER = {
  idempotencyKey: 'idempotency-key',
  lastEventId: 'last-event-id',
  requestId: 'x-request-id',
  timedOut: 'jobwire-timed-out',
  retryAfter: 'retry-after',
  idempotentReplayed: 'idempotent-replayed',
  authorization: 'authorization',
  contentType: 'content-type',
  etag: 'etag',
  ifNoneMatch: 'if-none-match',
  location: 'location',
  origin: 'origin',
  vary: 'vary',
  date: 'date',
  rateLimitPolicy: 'RateLimit-Policy',
  rateLimitLimit: 'RateLimit-Limit',
  rateLimitRemaining: 'RateLimit-Remaining',
  rateLimitReset: 'RateLimit-Reset',
} as const

/** The CORS headers (src/http/cors.ts; docs/production.md, "CORS"). */
export const CORS_HEADER = {
  allowOrigin: 'access-control-allow-origin',
  allowMethods: 'access-control-allow-methods',
  allowHeaders: 'access-control-allow-headers',
  exposeHeaders: 'access-control-expose-headers',
  maxAge: 'access-control-max-age',
  requestMethod: 'access-control-request-method',
} as const

/** What a browser on another origin may send: the request headers the API reads. */
export const CORS_ALLOWED_HEADERS = [
  HEADER.authorization,
  HEADER.contentType,
  HEADER.idempotencyKey,
  HEADER.ifNoneMatch,
  HEADER.lastEventId,
] as const

/** What a script on another origin may read: the response headers a client acts on. */
export const CORS_EXPOSED_HEADERS = [
  HEADER.etag,
  HEADER.location,
  HEADER.retryAfter,
  HEADER.timedOut,
  HEADER.idempotentReplayed,
  HEADER.rateLimitPolicy,
  HEADER.rateLimitLimit,
  HEADER.rateLimitRemaining,
  HEADER.rateLimitReset,
  HEADER.requestId,
  // The client resumes a feed that had no event yet from the response's Date (docs/client.md).
  HEADER.date,
] as const

export const QUERY = {
  token: 'token',
  lastEventId: 'lastEventId',
  stream: 'stream',
  format: 'format',
  timeout: 'timeout',
  since: 'since',
  jobs: 'jobs',
  /** Accepted and ignored on every route: the cache-buster jQuery and EventSource polyfills add. */
  cacheBuster: '_',
} as const

export const MEDIA_TYPE = {
  json: 'application/json',
  problem: 'application/problem+json',
  eventStream: 'text/event-stream',
} as const

/** Problem `type` URIs are `${PROBLEM_BASE}<slug>`; docs/errors.md lists every slug. */
export const PROBLEM_BASE = 'https://jobwire.dev/problems/'
