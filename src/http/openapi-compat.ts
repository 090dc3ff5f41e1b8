// The compatibility routes in /openapi.json (docs/compat.md): listed when COMPAT_ROUTES turns
// their section on, so the document names exactly the routes the instance answers. The
// bodies are described here; stream messages in prose, as for v1 (src/http/openapi.ts).
import type { OpenAPIRegistry } from '@asteasolutions/zod-to-openapi'
import { z } from 'zod'
import type { CompatSection } from '../protocol/compat.js'
import { JOB_STATUSES } from '../protocol/job.js'
import { HEADER, MEDIA_TYPE } from '../protocol/http.js'
import { jobParamsSchema } from './schemas.js'

/** What src/http/openapi.ts shares with this module (passed in: no import cycle). */
export interface OpenApiParts {
  problems(...statuses: number[]): Record<string, unknown>
  jobDocumentSchema: z.ZodType
  waitQuery: z.ZodObject
  streamSecurity: Array<Record<string, string[]>>
}

const time = z.iso.datetime({ offset: true })
const idParams = jobParamsSchema
const eventStream = { [MEDIA_TYPE.eventStream]: { schema: z.string() } }
const lastEventId = z.object({ [HEADER.lastEventId]: z.string().optional() })

const apiJobsSchema = z
  .object({
    id: z.uuid(),
    type: z.string(),
    status: z.enum(['pending', 'processing', 'completed', 'failed']),
    created_at: time,
    result: z.unknown().optional().meta({ description: 'Completed jobs only' }),
    error: z.string().optional().meta({ description: 'Failed (or cancelled) jobs only' }),
    completed_at: time.nullable().optional().meta({ description: 'Completed or failed only' }),
  })
  .meta({ id: 'CompatApiJob' })

const apiQueueSchema = z
  .object({
    task_id: z.uuid(),
    status: z.enum(JOB_STATUSES),
    result: z.unknown().meta({ description: 'Null until completed' }),
    progress: z.number().min(0).max(100),
    created_at: time,
    completed_at: time.nullable(),
  })
  .meta({ id: 'CompatApiQueueTask' })

const apiV1StatusSchema = z
  .object({
    jobId: z.uuid(),
    status: z.enum(JOB_STATUSES),
    progress: z.number().min(0).max(100),
    currentStep: z.string().nullable(),
    estimatedTimeRemaining: z.number().int().nullable(),
    result: z.unknown(),
    error: z.string().nullable(),
    errorCode: z.string().nullable(),
    createdAt: time,
    completedAt: time.nullable(),
  })
  .meta({ id: 'CompatApiV1Status' })

export function registerCompatPaths(
  registry: OpenAPIRegistry,
  sections: readonly CompatSection[],
  parts: OpenApiParts,
): void {
  const { problems, streamSecurity } = parts
  const json = (schema: z.ZodType, description: string) => ({
    description,
    content: { [MEDIA_TYPE.json]: { schema } },
  })
  const poll = (path: string, summary: string, schema: z.ZodType, queryToken = false) =>
    registry.registerPath({
      method: 'get',
      path,
      summary,
      tags: ['compatibility'],
      ...(queryToken ? { security: streamSecurity } : {}),
      request: { params: idParams },
      responses: { 200: json(schema, 'The job'), ...problems(400, 401, 403, 404, 429, 500) },
    })
  const stream = (path: string, summary: string, description: string) =>
    registry.registerPath({
      method: 'get',
      path,
      summary,
      description,
      tags: ['compatibility'],
      security: streamSecurity,
      request: { params: idParams, headers: lastEventId },
      responses: {
        200: { description: 'The event stream', content: eventStream },
        204: { description: 'The job is terminal and the client has its final version' },
        ...problems(400, 401, 403, 404, 429, 500),
      },
    })

  if (sections.includes('jobs'))
    registry.registerPath({
      method: 'get',
      path: '/jobs/{id}',
      summary: 'Compatibility (jobs): read, stream or upgrade one job',
      description:
        "The job document; with `?stream=true` (or Accept: text/event-stream) the SSE stream of /v1/jobs/{id}/events (JSON Patch, resumable); with a WebSocket upgrade the stream of /v1/jobs/{id}. A user token or the job's watch token, in the header or ?token=; with COMPAT_ANONYMOUS_READ=true no token reads the job.",
      tags: ['compatibility'],
      security: [...streamSecurity, {}],
      request: { params: idParams, headers: lastEventId },
      responses: {
        200: {
          description: 'The job document, or the event stream',
          content: { [MEDIA_TYPE.json]: { schema: parts.jobDocumentSchema }, ...eventStream },
        },
        204: { description: 'Streaming: the job is terminal and the client has its final version' },
        ...problems(400, 401, 403, 404, 429, 500),
      },
    })
  if (sections.includes('api-jobs')) {
    poll('/api/jobs/{id}', 'Compatibility (api-jobs): poll one job', apiJobsSchema)
    stream(
      '/api/jobs/{id}/events',
      'Compatibility (api-jobs): stream one job to an admin',
      'Admins only (403 otherwise). Unnamed SSE messages `{status, progress, step}`: status queued|processing|completed|failed, progress 0.0–1.0, step "initializing" while the job has none. The current state comes at once; the stream closes after the terminal message.',
    )
  }
  if (sections.includes('api-queue')) {
    poll('/api/queue/poll/{id}', 'Compatibility (api-queue): poll one task', apiQueueSchema)
    registry.registerPath({
      method: 'get',
      path: '/api/queue/poll/{id}/wait',
      summary: 'Compatibility (api-queue): long-poll one task to completion',
      description: `Answers once the task is completed, failed or cancelled, or at the timeout with the current state (${HEADER.timedOut}: true); the bounds and 400s of /v1/jobs/{id}/wait.`,
      tags: ['compatibility'],
      security: streamSecurity,
      request: { params: idParams, query: parts.waitQuery },
      responses: {
        200: json(apiQueueSchema, 'The task'),
        ...problems(400, 401, 403, 404, 429, 500),
      },
    })
  }
  if (sections.includes('api-v1')) {
    stream(
      '/api/v1/jobs/{id}/stream',
      'Compatibility (api-v1): the typed stream of one job',
      'Unnamed SSE messages `{type, data}`: `connected` {connectionId, jobId} first, then `step-change` {status, step, previousStep}, `progress-update` {progress, currentStep, estimatedTimeRemaining}, and `complete` {result} or `failed` {error, errorCode}; closed at the end or after SSE_MAX_LIFETIME_MS.',
    )
    poll(
      '/api/v1/jobs/{id}/status',
      'Compatibility (api-v1): poll one job',
      apiV1StatusSchema,
      true,
    )
  }
}
