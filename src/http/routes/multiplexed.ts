// `GET /v1/events`: one SSE stream for many jobs (`?jobs=a,b,c`) or, without `jobs`, the
// tenant feed — every job the caller may see, as it is created and as it changes (admins
// the whole tenant, members their own jobs), decided from the notification's tenant and
// owner without a query per event.
//   * jobs: a malformed id is a 400 before the stream opens; ids that are missing or not
//     visible are listed in one initial `unavailable` event (never `error`, which
//     EventSource hands to onerror), each with its own status, and the rest stream; when
//     none is visible the answer is that job's problem (404). Jobs that
//     end are dropped; the stream ends when all have ended. The resume id keeps ended jobs'
//     final versions: a reconnect after everything ended gets 204, and EventSource stops.
//   * feed: resume replays jobs changed since the last event (minus a 5 s margin for
//     transactions that committed late), up to FEED_RESUME_MAX_JOBS; beyond that a `reset`
//     event tells the client to re-list.
import type { ServerResponse } from 'node:http'
import { z } from 'zod'
import type { Config } from '../../config/index.js'
import { listChangedSince } from '../../db/jobs.js'
import { withTenant, type Principal } from '../../db/tenant-transaction.js'
import { ValidationError } from '../../errors.js'
import { isTerminalStatus } from '../../protocol/job.js'
import { toJobDocument } from '../../events/document.js'
import { HEADER, QUERY } from '../../protocol/http.js'
import { SSE_EVENT, type UnavailableMessage } from '../../protocol/stream-messages.js'
import { SSE_HEADERS, sseFrame } from '../../transports/sse-frame.js'
import { SseMuxStream } from '../../transports/sse-mux.js'
import { parseFeedResumeId, parseJobsResumeId } from '../../protocol/resume-id.js'
import { assertUserToken } from '../auth.js'
import type { EdgeHandler, EdgeRequest } from '../edge.js'
import { subscribeJobs, subscriptionCost, type StreamDeps } from '../subscribe.js'
import type { RateLimits } from '../rate-limit.js'
import { NO_SLOTS, type SlotLease } from '../stream-slots.js'
import { queryToken, strictQuery } from '../schemas.js'
import { parseRequest } from '../validation.js'

const UUID = z.guid()

const FEED_RESUME_MARGIN_MS = 5000

export interface MultiplexedRouteDeps extends StreamDeps {
  config: Pick<
    Config,
    | 'SSE_RETRY_MS'
    | 'SSE_MAX_LIFETIME_MS'
    | 'STREAM_HIGH_WATER_BYTES'
    | 'WS_MAX_SUBSCRIPTIONS'
    | 'FEED_RESUME_MAX_JOBS'
  >
  onStreamBytes?(transport: 'sse', bytes: number): void
  /** The request itself was counted; a long `jobs` list is charged what its read costs. */
  rateLimits?: Pick<RateLimits, 'charge'>
}

/** `GET /v1/events`: many jobs (`?jobs=`) or the tenant feed, over one SSE response. */
export function eventsHandler(deps: MultiplexedRouteDeps): EdgeHandler {
  const { config } = deps
  // Shared by every stream: no closure per connection.
  const onWrite = deps.onStreamBytes && ((bytes: number) => deps.onStreamBytes!('sse', bytes))
  const querySchema = strictQuery({
    [QUERY.jobs]: z
      .string({ error: 'expected one comma-separated list of job ids' })
      .transform((v) => [
        ...new Set(
          v
            .split(',')
            .map((s) => s.trim().toLowerCase())
            .filter(Boolean),
        ),
      ])
      .pipe(
        z
          .array(z.string())
          .superRefine((ids, ctx) => {
            for (const id of ids)
              if (!UUID.safeParse(id).success)
                ctx.addIssue({ code: 'custom', message: `${id}: not a job id (expected a UUID)` })
          })
          .min(1, { error: 'list at least one job id' })
          .max(config.WS_MAX_SUBSCRIPTIONS, {
            error: `at most ${config.WS_MAX_SUBSCRIPTIONS} jobs per stream`,
          }),
      )
      .optional(),
    [QUERY.lastEventId]: z.string({ error: 'expected a single value' }).optional(),
    [QUERY.token]: queryToken,
  })

  const handle: EdgeHandler = async ({
    req,
    res,
    principal,
    query: rawQuery,
    isHead,
    head,
    writeHead,
    streamOpened,
  }) => {
    const query = parseRequest(querySchema, rawQuery, 'query')
    const lastEventId = (req.headers[HEADER.lastEventId] as string | undefined) ?? query.lastEventId
    if (!query.jobs) assertUserToken(principal, 'open the tenant feed')
    else await deps.rateLimits?.charge(principal, subscriptionCost(query.jobs.length) - 1)
    // A HEAD is authorised like a GET but opens no stream: it takes no slot.
    const slots = isHead ? NO_SLOTS : await deps.slots.acquire(principal)
    try {
      await serve(principal, query, lastEventId, res, slots, isHead, head, writeHead)
      if (res.headersSent && !res.writableEnded) streamOpened()
    } finally {
      slots.release() // unless the open stream holds them
    }
  }

  async function serve(
    principal: Principal,
    query: z.infer<typeof querySchema>,
    lastEventId: string | undefined,
    res: ServerResponse,
    slots: SlotLease,
    isHead: boolean,
    head: readonly string[],
    writeHead: EdgeRequest['writeHead'],
  ): Promise<void> {
    if (isHead && !query.jobs) {
      writeHead(200, SSE_HEADERS).end()
      return
    }
    const stream = new SseMuxStream(res, {
      mode: query.jobs ? 'jobs' : 'feed',
      tenantId: principal.tenantId,
      headers: head,
      slots,
      ownerId: principal.role === 'admin' ? undefined : principal.userId,
      retryMs: config.SSE_RETRY_MS,
      maxLifetimeMs: config.SSE_MAX_LIFETIME_MS,
      highWaterBytes: config.STREAM_HIGH_WATER_BYTES,
      onWrite,
    })
    const mux = stream.mux

    if (!query.jobs) {
      // Register the feed before the replay read, so nothing committed meanwhile is missed.
      mux.openFeed((watcher) => deps.hub.watchFeed(principal.tenantId, watcher))
      try {
        const since = parseFeedResumeId(lastEventId)
        const replay =
          since === undefined
            ? []
            : await withTenant(deps.db, principal, (trx) =>
                listChangedSince(
                  trx,
                  new Date(since - FEED_RESUME_MARGIN_MS),
                  config.FEED_RESUME_MAX_JOBS + 1,
                ),
              )
        if (res.destroyed) return mux.close()
        stream.open(deps.registry)
        if (replay.length > config.FEED_RESUME_MAX_JOBS) {
          mux.send({
            type: 'reset',
            detail: 'Too much changed while you were away: list the jobs again (GET /v1/jobs).',
          })
        } else {
          for (const row of replay) mux.replay({ doc: toJobDocument(row) })
        }
      } catch (error) {
        mux.close()
        throw error
      }
      return
    }

    const positions = parseJobsResumeId(lastEventId)
    let subscription
    try {
      subscription = await subscribeJobs(
        deps,
        principal,
        mux,
        query.jobs,
        config.WS_MAX_SUBSCRIPTIONS,
      )
    } catch (error) {
      mux.close()
      throw error
    }
    const { authorised: ok, refused } = subscription
    if (ok.length === 0) {
      const first = refused.find((f) => !(f.error instanceof ValidationError))
      if (!first)
        throw new ValidationError(
          `query.jobs: no valid job id`,
          refused.map((f) => ({ name: 'query.jobs', reason: `${f.job}: ${f.error.message}` })),
        )
      throw first.error
    }
    // Every visible job has ended and the client has seen each final version: 204 tells
    // EventSource to stop reconnecting, as on a single job's stream (docs/contract.md §7).
    const isAllSeen = ok.every(({ watch }) => {
      const doc = watch.state.current!
      return isTerminalStatus(doc.status) && (positions.get(doc.id) ?? 0) >= doc.version
    })
    if (res.destroyed || isAllSeen || isHead) {
      for (const o of ok) o.watch.cancel()
      mux.close()
      if (!res.destroyed) {
        if (isAllSeen) writeHead(204).end()
        else writeHead(200, SSE_HEADERS).end()
      }
      return
    }
    const failures = refused.map(({ job, error }) => ({
      job,
      status: error.status,
      detail: error.message,
    }))
    stream.open(deps.registry)
    if (failures.length > 0) {
      const unavailable: UnavailableMessage = {
        type: SSE_EVENT.unavailable,
        status: Math.max(...failures.map((f) => f.status)),
        detail: 'Some jobs cannot be watched.',
        jobs: failures,
      }
      res.write(sseFrame(SSE_EVENT.unavailable, unavailable))
    }
    for (const { sub, watch } of ok) {
      const resumeFrom = positions.get(watch.state.id)
      mux.start(
        sub,
        watch,
        resumeFrom !== undefined && resumeFrom <= watch.state.version ? resumeFrom : undefined,
      )
    }
  }

  return handle
}
