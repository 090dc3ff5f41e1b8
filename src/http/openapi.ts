// The OpenAPI 3.1 document served at /openapi.json, generated (zod-to-openapi) from the zod
// schemas the routes validate requests with, so the document cannot drift from what the
// server accepts. Response shapes have their own schemas here; the job document's is
// checked against the JobDocument type at compile time. Stream message shapes (SSE, WS)
// are described in prose: OpenAPI has no vocabulary for a message sequence.
import { OpenAPIRegistry, OpenApiGeneratorV31 } from '@asteasolutions/zod-to-openapi'
import { z } from 'zod'
import type { Config } from '../config/index.js'
import { API_PREFIX, HEADER, MEDIA_TYPE, PROBLEM_BASE, QUERY } from '../protocol/http.js'
import { JOB_STATUSES, type JobDocument } from '../protocol/job.js'
import { registerCompatPaths } from './openapi-compat.js'
import { sseQuerySchema, waitQuerySchemaFor } from './routes/streams.js'
import {
  createJobBodySchema,
  idempotencyKeySchema,
  jobParamsSchema,
  listJobsQuerySchema,
} from './schemas.js'

const isoDateTime = z.iso.datetime({ offset: true })

const jobErrorSchema = z.looseObject({
  message: z.string(),
  code: z.string().nullable().optional(),
})

export const jobDocumentSchema: z.ZodType<JobDocument> = z
  .object({
    id: z.uuid(),
    type: z.string(),
    status: z.enum(JOB_STATUSES),
    progress: z.number().min(0).max(100).meta({ description: '0 to 100, at most 2 decimals' }),
    step: z.string().nullable(),
    eta_seconds: z.number().int().min(0).nullable().meta({
      description: 'Estimated seconds left; 0 once the job is completed, failed or cancelled',
    }),
    result: z.unknown().meta({ description: 'Set when completed, null otherwise' }),
    error: jobErrorSchema
      .nullable()
      .meta({ description: 'Set when failed, null otherwise (the same value as last_error)' }),
    last_error: jobErrorSchema.nullable().meta({
      description:
        'The error of the latest failed attempt, whatever the status: why a queued job with attempts > 0 waits for a retry, and what the attempt now running follows. Null when no attempt failed, and once the job completed',
    }),
    attempts: z.number().int(),
    max_attempts: z.number().int(),
    cancel_requested: z.boolean(),
    version: z.number().int().min(1),
    created_at: isoDateTime,
    updated_at: isoDateTime,
    started_at: isoDateTime.nullable(),
    completed_at: isoDateTime.nullable(),
  })
  .meta({ id: 'JobDocument', description: 'A job as every endpoint and stream returns it' })

const jobListSchema = z
  .object({ data: z.array(jobDocumentSchema), next_cursor: z.string().nullable() })
  .meta({ id: 'JobList' })

const createdJobSchema = z
  .intersection(
    jobDocumentSchema,
    z.object({
      watch_token: z.string().meta({
        description: 'A token that may only watch this job (SSE, long-poll, WebSocket)',
      }),
    }),
  )
  .meta({ id: 'CreatedJob' })

export const problemSchema = z
  .looseObject({
    type: z.string().meta({ description: `${PROBLEM_BASE}<slug>` }),
    title: z.string(),
    status: z.number().int(),
    detail: z.string(),
    instance: z.string().optional(),
    invalid_params: z
      .array(z.object({ name: z.string(), reason: z.string() }))
      .optional()
      .meta({ description: 'Validation errors only: each failing field, e.g. query.timeout' }),
  })
  .meta({ id: 'Problem', description: 'RFC 9457 problem details' })

const healthSchema = z.object({ status: z.literal('ok') })
const readinessSchema = z.object({
  status: z.enum(['ready', 'not-ready']),
  checks: z.record(z.string(), z.enum(['ok', 'degraded', 'failing'])),
})

const ERROR_TEXT: Record<number, string> = {
  400: 'The request is not valid (invalid_params lists the fields)',
  401: 'No, a malformed, an expired or a wrongly signed token',
  403: 'The token may not do this (e.g. a watch token, or a member on the tenant feed)',
  404: 'No such job visible to the caller (another tenant’s job looks the same)',
  409: 'The job has already finished',
  413: 'The body is larger than the limit',
  415: 'The body is not JSON',
  422: 'Idempotency-Key reused with a different request',
  429: 'A rate limit or the concurrent-stream cap; Retry-After says when to retry',
  500: 'Something failed on the server; quote X-Request-Id',
  503: 'Not ready',
}

function problems(...statuses: number[]) {
  return Object.fromEntries(
    statuses.map((status) => [
      status,
      {
        description: ERROR_TEXT[status] ?? 'Error',
        content: { [MEDIA_TYPE.problem]: { schema: problemSchema } },
      },
    ]),
  )
}

const requestIdHeader = {
  [HEADER.requestId]: {
    description: 'The request id (the one sent, when valid, or a new one); also in the logs',
    schema: { type: 'string' as const },
  },
}

const SSE_JOB_TEXT = `Server-Sent Events for one job. The first line is \`retry: <ms>\`; every event's \`id:\` is the job's version.

**format=patch** (default): \`event: snapshot\` with the whole JobDocument, then one \`event: patch\` per change whose data is an RFC 6902 JSON Patch from the previous event's document, starting with \`{"op":"test","path":"/version","value":<base>}\`. A snapshot may come at any time and replaces the client's state.
**format=full**: \`event: snapshot\` each time.
**format=events**: \`connected\` {connectionId, jobId}, \`status-change\` {status, previousStatus, attempts, maxAttempts, lastError, lastErrorCode}, \`progress-update\` {progress, currentStep, estimatedTimeRemaining}, \`step-change\`, \`complete\` {result}, \`failed\` {error, errorCode}, \`cancelled\`.

On a terminal status the stream sends that change, then \`event: end\` {job, version, status}, and closes. \`Last-Event-ID\` (or \`?lastEventId=\`) resumes with one patch when the server still has that version, else a snapshot; 204 when the job is terminal and the client has its final version. \`: keep-alive\` comments are heartbeats.`

const streamSecurity: Array<Record<string, string[]>> = [{ bearerAuth: [] }, { queryToken: [] }]

/** Builds the document; the long-poll bounds and the compatibility routes come from the configuration. */
export function buildOpenApiDocument(
  config: Pick<Config, 'LONGPOLL_MAX_SECONDS'> & Partial<Pick<Config, 'COMPAT_ROUTES'>>,
) {
  const registry = new OpenAPIRegistry()
  registry.registerComponent('securitySchemes', 'bearerAuth', {
    type: 'http',
    scheme: 'bearer',
    bearerFormat: 'JWT',
    description:
      'A user JWT (claims sub, tenant_id, role) or, on stream routes, a watch token from POST /v1/jobs',
  })
  registry.registerComponent('securitySchemes', 'queryToken', {
    type: 'apiKey',
    in: 'query',
    name: QUERY.token,
    description:
      'The same token in ?token=, for stream, wait and WebSocket routes only (EventSource cannot send headers); never logged',
  })
  registry.registerComponent('securitySchemes', 'metricsToken', {
    type: 'http',
    scheme: 'bearer',
    description: 'METRICS_TOKEN, when configured',
  })

  // The token is described by the queryToken scheme, not repeated as a parameter; `_` (the
  // ignored cache-buster every route accepts) is described in docs/api.md only.
  const hidden = { [QUERY.token]: true, [QUERY.cacheBuster]: true } as const
  const sseQuery = sseQuerySchema.omit(hidden)
  const waitQuery = waitQuerySchemaFor(config).omit(hidden)
  const listQuery = listJobsQuerySchema.omit(hidden)
  const jobPath = `${API_PREFIX}/jobs/{id}`

  registry.registerPath({
    method: 'post',
    path: `${API_PREFIX}/jobs`,
    summary: 'Create a job',
    description:
      'A new job is queued. With an Idempotency-Key, a retry of the same request returns the same job (200, Idempotent-Replayed: true).',
    request: {
      headers: z.object({ [HEADER.idempotencyKey]: idempotencyKeySchema.optional() }),
      body: { required: true, content: { [MEDIA_TYPE.json]: { schema: createJobBodySchema } } },
    },
    responses: {
      201: {
        description: 'Created; Location names the job',
        headers: {
          location: { schema: { type: 'string' } },
          etag: { schema: { type: 'string' } },
          ...requestIdHeader,
        },
        content: { [MEDIA_TYPE.json]: { schema: createdJobSchema } },
      },
      200: {
        description: 'An Idempotency-Key replay: the job created by the first request',
        content: { [MEDIA_TYPE.json]: { schema: createdJobSchema } },
      },
      ...problems(400, 401, 403, 413, 415, 422, 429, 500),
    },
  })
  registry.registerPath({
    method: 'get',
    path: `${API_PREFIX}/jobs`,
    summary: 'List visible jobs',
    description:
      'Admins see the tenant’s jobs, members their own. Newest first; pass next_cursor as cursor for the next page.',
    request: { query: listQuery },
    responses: {
      200: {
        description: 'A page of jobs',
        headers: requestIdHeader,
        content: { [MEDIA_TYPE.json]: { schema: jobListSchema } },
      },
      ...problems(400, 401, 403, 429, 500),
    },
  })
  registry.registerPath({
    method: 'get',
    path: jobPath,
    summary: 'Read a job, or stream it',
    description: `The job document with an ETag from its version (If-None-Match → 304). With \`Accept: text/event-stream\` or \`?stream=true\` this is the SSE stream of /v1/jobs/{id}/events, and the token may come in ?token=; with a WebSocket upgrade, the WebSocket stream of this job (messages as on /v1/ws).\n\n${SSE_JOB_TEXT}`,
    security: streamSecurity,
    request: {
      params: jobParamsSchema,
      query: sseQuery,
      headers: z.object({
        'if-none-match': z.string().optional(),
        [HEADER.lastEventId]: z.string().optional(),
      }),
    },
    responses: {
      200: {
        description: 'The job; or, when streaming, the event stream',
        headers: { etag: { schema: { type: 'string' } }, ...requestIdHeader },
        content: {
          [MEDIA_TYPE.json]: { schema: jobDocumentSchema },
          [MEDIA_TYPE.eventStream]: { schema: z.string() },
        },
      },
      204: { description: 'Streaming: the job is terminal and the client has its final version' },
      304: { description: 'Not modified (If-None-Match names the current version)' },
      ...problems(400, 401, 403, 404, 429, 500),
    },
  })
  registry.registerPath({
    method: 'get',
    path: `${jobPath}/events`,
    summary: 'Stream one job (Server-Sent Events)',
    description: SSE_JOB_TEXT,
    security: streamSecurity,
    request: {
      params: jobParamsSchema,
      query: sseQuery,
      headers: z.object({ [HEADER.lastEventId]: z.string().optional() }),
    },
    responses: {
      200: {
        description: 'The event stream',
        content: { [MEDIA_TYPE.eventStream]: { schema: z.string() } },
      },
      204: { description: 'The job is terminal and the client has its final version' },
      ...problems(400, 401, 403, 404, 429, 500),
    },
  })
  registry.registerPath({
    method: 'get',
    path: `${jobPath}/wait`,
    summary: 'Long-poll one job',
    description: `Answers as soon as the job's version is greater than \`since\`, or, without \`since\`, once the job is terminal; at once if that already holds. On time-out: 200 with the current document and \`${HEADER.timedOut}: true\`. \`timeout\` is in seconds, from 0 to ${config.LONGPOLL_MAX_SECONDS}.`,
    security: streamSecurity,
    request: { params: jobParamsSchema, query: waitQuery },
    responses: {
      200: {
        description: 'The job document',
        headers: {
          [HEADER.timedOut]: { schema: { type: 'string', enum: ['true', 'false'] } },
          etag: { schema: { type: 'string' } },
          ...requestIdHeader,
        },
        content: { [MEDIA_TYPE.json]: { schema: jobDocumentSchema } },
      },
      ...problems(400, 401, 403, 404, 429, 500),
    },
  })
  registry.registerPath({
    method: 'post',
    path: `${jobPath}/cancel`,
    summary: 'Cancel a job',
    description:
      'A queued job is cancelled at once (200); a running job has cancel_requested set and its worker stops it (202).',
    request: { params: jobParamsSchema },
    responses: {
      200: {
        description: 'Cancelled',
        content: { [MEDIA_TYPE.json]: { schema: jobDocumentSchema } },
      },
      202: {
        description: 'Cancellation requested from the worker',
        content: { [MEDIA_TYPE.json]: { schema: jobDocumentSchema } },
      },
      ...problems(400, 401, 403, 404, 409, 429, 500),
    },
  })
  registry.registerPath({
    method: 'get',
    path: `${API_PREFIX}/events`,
    summary: 'Stream many jobs, or the tenant feed (Server-Sent Events)',
    description: `With \`jobs=a,b,…\`: one stream for those jobs; a malformed id is a 400 before the stream opens; jobs that cannot be watched are listed, each with its own status, in one initial \`unavailable\` event (never \`error\`, which EventSource hands to onerror) and the rest stream (404 when none is visible). Without \`jobs\`: every job the caller may see, as it is created and changes (user tokens only). Each event's data names its job and version: \`{"type":"snapshot","job","version","doc"}\`, \`{"type":"patch","job","version","patch":[…]}\`, \`{"type":"end","job","version","status"}\` (\`status: "deleted"\` for a deleted job); the feed may send \`{"type":"reset","detail"}\` when too much changed while the client was away. \`Last-Event-ID\` resumes every position at once.`,
    security: streamSecurity,
    request: {
      query: z.object({
        [QUERY.jobs]: z
          .string()
          .optional()
          .meta({ description: 'Comma-separated job ids; omit for the tenant feed' }),
        [QUERY.lastEventId]: z.string().optional(),
      }),
      headers: z.object({ [HEADER.lastEventId]: z.string().optional() }),
    },
    responses: {
      200: {
        description: 'The event stream',
        content: { [MEDIA_TYPE.eventStream]: { schema: z.string() } },
      },
      ...problems(400, 401, 403, 404, 429, 500),
    },
  })
  registry.registerPath({
    method: 'get',
    path: `${API_PREFIX}/ws`,
    summary: 'WebSocket, multiplexed',
    description: `Upgrade to a WebSocket; JSON text messages. Client: \`{"op":"subscribe","jobs":["<id>",…],"since":{"<id>":<version>}}\`, \`{"op":"subscribe","feed":"tenant"}\`, \`{"op":"unsubscribe","jobs":[…]}\`. Server: \`{"type":"snapshot","job","version","doc"}\`, \`{"type":"patch","job","version","patch":[…]}\` (RFC 6902, starting with a test of /version), \`{"type":"end","job","version","status"}\`, and \`{"type":"error","job"?,"status","detail"}\` for a job that cannot be subscribed (the connection stays open; several failed jobs of one message come as one error listing them in \`jobs\`: [{job,status,detail}]). At most WS_MAX_SUBSCRIPTIONS jobs per connection and per message. Protocol pings detect dead peers; repeated malformed messages close with 1008; a client that stops reading is disconnected.`,
    security: streamSecurity,
    responses: {
      101: { description: 'Switching Protocols: the WebSocket is open' },
      ...problems(401, 404, 429),
    },
  })
  registry.registerPath({
    method: 'get',
    path: '/healthz',
    summary: 'Liveness',
    security: [],
    responses: {
      200: { description: 'Alive', content: { [MEDIA_TYPE.json]: { schema: healthSchema } } },
    },
  })
  registry.registerPath({
    method: 'get',
    path: '/readyz',
    summary: 'Readiness: the database answers and the listener is connected',
    security: [],
    responses: {
      200: { description: 'Ready', content: { [MEDIA_TYPE.json]: { schema: readinessSchema } } },
      503: {
        description: 'Not ready',
        content: { [MEDIA_TYPE.json]: { schema: readinessSchema } },
      },
    },
  })
  registry.registerPath({
    method: 'get',
    path: '/metrics',
    summary: 'Prometheus metrics',
    description:
      'The text exposition format. Needs METRICS_TOKEN as a bearer token when one is configured; 404 when METRICS_ENABLED=false.',
    security: [{ metricsToken: [] }, {}],
    responses: {
      200: { description: 'Metrics', content: { 'text/plain': { schema: z.string() } } },
      ...problems(401, 404),
    },
  })
  registry.registerPath({
    method: 'get',
    path: '/openapi.json',
    summary: 'This document',
    security: [],
    responses: {
      200: {
        description: 'OpenAPI 3.1',
        content: { [MEDIA_TYPE.json]: { schema: z.looseObject({ openapi: z.string() }) } },
      },
    },
  })
  registry.registerPath({
    method: 'get',
    path: '/docs',
    summary: 'A page listing the routes of this document (development only)',
    security: [],
    responses: {
      200: { description: 'HTML', content: { 'text/html': { schema: z.string() } } },
      ...problems(404),
    },
  })

  registry.registerPath({
    method: 'get',
    path: '/client/jobwire-client.js',
    summary: 'The browser client (jobwire/client) as one ES module',
    description:
      'For `<script type="module">` or `import` from any origin (Access-Control-Allow-Origin: *). Strong ETag; If-None-Match answers 304. Cache-Control: public, max-age=300 in production, no-cache elsewhere.',
    security: [],
    responses: {
      200: { description: 'JavaScript', content: { 'text/javascript': { schema: z.string() } } },
      304: { description: 'Not modified (If-None-Match matched the ETag)' },
      ...problems(404),
    },
  })
  registry.registerPath({
    method: 'get',
    path: '/client/jobwire-client.js.map',
    summary: 'The source map of the browser client',
    security: [],
    responses: {
      200: { description: 'Source map', content: { [MEDIA_TYPE.json]: { schema: z.string() } } },
      304: { description: 'Not modified (If-None-Match matched the ETag)' },
      ...problems(404),
    },
  })

  registerCompatPaths(registry, config.COMPAT_ROUTES ?? [], {
    problems,
    jobDocumentSchema,
    waitQuery,
    streamSecurity,
  })

  return new OpenApiGeneratorV31(registry.definitions).generateDocument({
    openapi: '3.1.0',
    info: {
      title: 'jobwire',
      version: '1',
      description:
        'Job status over REST, Server-Sent Events, long-poll and WebSocket. Errors are application/problem+json (RFC 9457).',
    },
    security: [{ bearerAuth: [] }],
  })
}
