// The edge's handlers for one job's streams: SSE (`/v1/jobs/:id/events`, or `GET
// /v1/jobs/:id` with Accept: text/event-stream or ?stream=true) and long-poll
// (`/v1/jobs/:id/wait`). Every decision that can fail (auth, validation, 404, caps) is made
// before any stream byte.
import { randomUUID } from 'node:crypto'
import { z } from 'zod'
import type { Config } from '../../config/index.js'
import { ForbiddenError, JobNotFoundError } from '../../errors.js'
import { HEADER, QUERY } from '../../protocol/http.js'
import { isTerminalStatus, type JobDocument } from '../../protocol/job.js'
import { LongPollWaiter, type WaitOutcome } from '../../transports/longpoll.js'
import { SSE_FORMATS, SseJobStream } from '../../transports/sse.js'
import { SSE_HEADERS } from '../../transports/sse-frame.js'
import type { SseFrames } from '../../transports/compat-formats.js'
import { NO_SLOTS } from '../stream-slots.js'
import type { EdgeHandler } from '../edge.js'
import { writeProblem } from '../problem.js'
import { jobParamsSchema, queryToken, strictQuery } from '../schemas.js'
import { parseVersion, subscribeJob, type StreamDeps } from '../subscribe.js'
import { parseRequest } from '../validation.js'
import { etagOf } from './jobs.js'

export interface StreamRouteDeps extends StreamDeps {
  config: Pick<
    Config,
    | 'SSE_RETRY_MS'
    | 'SSE_MAX_LIFETIME_MS'
    | 'STREAM_HIGH_WATER_BYTES'
    | 'LONGPOLL_DEFAULT_SECONDS'
    | 'LONGPOLL_MAX_SECONDS'
  >
  onStreamBytes?(transport: 'sse', bytes: number): void
  /** A write that carried job events (SSE), or a long-poll answered with a change. */
  onEventDelivered?(transport: 'sse' | 'longpoll'): void
}

export const sseQuerySchema = strictQuery({
  [QUERY.format]: z
    .enum(SSE_FORMATS, { error: `expected one of ${SSE_FORMATS.join(', ')}` })
    .optional(),
  [QUERY.lastEventId]: z.string({ error: 'expected a single value' }).optional(),
  [QUERY.token]: queryToken,
  [QUERY.stream]: z
    .enum(['true', 'false', '1', '0'], { error: 'expected true or false' })
    .optional(),
})

interface WaitAnswer {
  body: Buffer
  /** Flat name, value, … (after the edge's own). */
  headers: readonly string[]
}

/** Per document (documents are immutable and shared): the body and both header variants. */
type WaitAnswers = WeakMap<JobDocument, { body: Buffer; ready?: WaitAnswer; timedOut?: WaitAnswer }>

function waitAnswer(
  answers: WaitAnswers,
  render: (doc: JobDocument) => unknown,
  doc: JobDocument,
  isReady: boolean,
): WaitAnswer {
  let cached = answers.get(doc)
  if (!cached) answers.set(doc, (cached = { body: Buffer.from(JSON.stringify(render(doc))) }))
  const key = isReady ? 'ready' : 'timedOut'
  return (cached[key] ??= {
    body: cached.body,
    headers: [
      'content-type',
      'application/json; charset=utf-8',
      'content-length',
      String(cached.body.length),
      'etag',
      etagOf(doc.version),
      'cache-control',
      'no-store',
      HEADER.timedOut,
      isReady ? 'false' : 'true',
    ],
  })
}

/** What a compatibility stream changes (docs/compat.md): its messages, who may open it. */
export interface JobStreamOptions {
  frames?: SseFrames
  /** Only an admin token opens it (403 otherwise, before the job is read). */
  adminOnly?: boolean
}

/**
 * The SSE stream of one job: `/v1/jobs/:id/events`, and `GET /v1/jobs/:id` as a stream; with
 * `options`, a compatibility stream on the same path through the hub.
 */
export function jobStreamHandler(
  deps: StreamRouteDeps,
  options: JobStreamOptions = {},
): EdgeHandler {
  const { config } = deps
  // Shared by every stream: no closure per connection.
  const onWrite = deps.onStreamBytes && ((bytes: number) => deps.onStreamBytes!('sse', bytes))
  const onEvent = deps.onEventDelivered && (() => deps.onEventDelivered!('sse'))
  return async ({
    req,
    res,
    principal,
    id: rawId,
    query: rawQuery,
    isHead,
    head,
    writeHead,
    streamOpened,
  }) => {
    const { id } = parseRequest(jobParamsSchema, { id: rawId }, 'path')
    const query = parseRequest(sseQuerySchema, rawQuery, 'query')
    const resumeFrom = parseVersion(req.headers[HEADER.lastEventId] ?? query.lastEventId)
    if (options.adminOnly && principal.role !== 'admin')
      throw new ForbiddenError("This stream is for admins only; the token is not an admin's.")
    // Taken before the authorising read: concurrent opens cannot all pass the cap. A HEAD
    // is authorised like a GET but opens no stream, so it takes no slot.
    const slots = isHead ? NO_SLOTS : await deps.slots.acquire(principal)
    try {
      const watch = await subscribeJob(deps, principal, id)
      if (res.destroyed || res.writableEnded) return watch.cancel()
      const doc = watch.state.current!
      // The client already has the final version: 204 tells EventSource to stop reconnecting.
      if (isTerminalStatus(doc.status) && resumeFrom !== undefined && resumeFrom >= doc.version) {
        watch.cancel()
        writeHead(204).end()
        return
      }
      if (isHead) {
        watch.cancel()
        writeHead(200, SSE_HEADERS).end()
        return
      }
      const stream = new SseJobStream(res, {
        format: query.format ?? 'patch',
        frames: options.frames,
        retryMs: config.SSE_RETRY_MS,
        maxLifetimeMs: config.SSE_MAX_LIFETIME_MS,
        highWaterBytes: config.STREAM_HIGH_WATER_BYTES,
        tenantId: principal.tenantId,
        headers: head,
        slots,
        // Only the typed vocabulary names its connection (`connected`).
        connectionId: query.format === 'events' || options.frames ? randomUUID() : '',
        onWrite,
        onEvent,
      })
      stream.open(
        watch,
        deps.registry,
        resumeFrom !== undefined && resumeFrom <= doc.version ? resumeFrom : undefined,
      )
      streamOpened()
    } finally {
      slots.release() // unless the open stream holds them
    }
  }
}

/**
 * `GET /v1/jobs/:id/wait`: long-poll. `render` shapes the answer's body (a compatibility
 * route's, docs/compat.md); the document by default.
 */
export function waitHandler(
  deps: StreamRouteDeps,
  render: (doc: JobDocument) => unknown = (doc) => doc,
): EdgeHandler {
  const { config } = deps
  const answers: WaitAnswers = new WeakMap()
  const waitQuerySchema = waitQuerySchemaFor(config)
  return async ({ req, res, principal, id: rawId, query: rawQuery, path, isHead, writeHead }) => {
    const { id } = parseRequest(jobParamsSchema, { id: rawId }, 'path')
    const query = parseRequest(waitQuerySchema, rawQuery, 'query')
    // A HEAD gets at once the headers a GET would get now; it never parks, so takes no slot.
    const timeoutMs = isHead
      ? 0
      : Math.round((query.timeout ?? config.LONGPOLL_DEFAULT_SECONDS) * 1000)
    const respond = (outcome: WaitOutcome) => {
      if (res.destroyed || res.writableEnded) return
      if (outcome.kind === 'gone') return writeProblem(res, new JobNotFoundError(id), path)
      if (outcome.kind === 'ready') deps.onEventDelivered?.('longpoll')
      // One change may answer thousands of parked waiters: its body and headers are built
      // once per document and written with one writeHead/end per waiter.
      const answer = waitAnswer(
        answers,
        render,
        outcome.doc,
        outcome.kind === 'ready' || outcome.kind === 'final',
      )
      writeHead(200, answer.headers).end(answer.body)
    }
    const slots = isHead ? NO_SLOTS : await deps.slots.acquire(principal)
    try {
      const waiter = new LongPollWaiter(principal.tenantId, query.since, respond, slots)
      const watch = await subscribeJob(deps, principal, id)
      if (res.destroyed || res.writableEnded) return watch.cancel()
      res.on('close', () => waiter.abort())
      req.socket.setTimeout(0)
      waiter.start(watch, deps.registry, timeoutMs)
    } finally {
      slots.release() // unless the parked waiter holds them
    }
  }
}

/** The long-poll query; its bounds come from the configuration. */
export function waitQuerySchemaFor(config: Pick<Config, 'LONGPOLL_MAX_SECONDS'>) {
  return strictQuery({
    timeout: z
      .string({ error: 'expected a single number of seconds' })
      .regex(/^\d{1,6}(\.\d{1,3})?$/, {
        error: `expected seconds from 0 to ${config.LONGPOLL_MAX_SECONDS}`,
      })
      .transform(Number)
      .pipe(
        z.number().max(config.LONGPOLL_MAX_SECONDS, {
          error: `must be at most ${config.LONGPOLL_MAX_SECONDS} seconds`,
        }),
      )
      .optional(),
    since: z
      .string({ error: 'expected a single version' })
      .regex(/^\d{1,15}$/, { error: 'expected a version number (0 or more)' })
      .transform(Number)
      .optional(),
    [QUERY.token]: queryToken,
  })
}
