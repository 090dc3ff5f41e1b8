// WebSocket endpoints, taking upgrades the edge admitted (src/http/edge.ts): `GET /v1/ws`
// (multiplexed) and `GET /v1/jobs/:id` with an upgrade (one job, the form existing clients
// use). The caps are checked before the handshake, the authorising read right after it; a
// job that cannot be subscribed gets an `error` message and the connection stays open.
// Repeated garbage closes the connection with 1008.
import { WebSocketServer, type RawData, type WebSocket } from 'ws'
import { z } from 'zod'
import type { Config } from '../config/index.js'
import { translateDbError } from '../db/errors.js'
import type { Principal } from '../db/tenant-transaction.js'
import { AppError } from '../errors.js'
import type { Multiplexer } from '../transports/multiplexer.js'
import { WsConnection, WsHeartbeat, WS_CLOSE } from '../transports/ws.js'
import type { RateLimits } from './rate-limit.js'
import type { UpgradeRequest } from './edge.js'
import { subscribeJobs, subscriptionCost, type StreamDeps } from './subscribe.js'
import type { SlotLease } from './stream-slots.js'
import type { Logger } from '../telemetry/logger.js'

export interface WsServerDeps extends StreamDeps {
  logger: Logger
  config: Pick<
    Config,
    | 'WS_PING_INTERVAL_MS'
    | 'WS_MAX_SUBSCRIPTIONS'
    | 'WS_MAX_MESSAGE_BYTES'
    | 'WS_MAX_BAD_MESSAGES'
    | 'STREAM_HIGH_WATER_BYTES'
  >
  /** The request rate limits, shared with the express routes. */
  rateLimits?: Pick<RateLimits, 'charge'>
  onWsBytes?(bytes: number): void
}

/** Client messages; one lists at most as many jobs as a connection may watch. */
function clientMessageSchemaFor(maxJobs: number) {
  const jobs = z
    .array(z.string())
    .max(maxJobs, { error: `at most ${maxJobs} jobs per message` })
    .optional()
  return z.discriminatedUnion('op', [
    z.strictObject({
      op: z.literal('subscribe'),
      jobs,
      since: z.record(z.string(), z.number().int().min(0)).optional(),
      feed: z.literal('tenant').optional(),
    }),
    z.strictObject({
      op: z.literal('unsubscribe'),
      jobs,
      feed: z.literal('tenant').optional(),
    }),
  ])
}

/** A job of one subscribe message that could not be subscribed. */
interface SubscribeFailure {
  job: string
  status: number
  detail: string
}

export interface WebSockets {
  /** Takes an admitted upgrade (src/http/edge.ts): its stream slots, then the handshake. */
  upgrade(request: UpgradeRequest): Promise<void>
  /** Shutdown: every socket is told the server is going away. */
  close(): void
}

export function createWebSockets(deps: WsServerDeps): WebSockets {
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: deps.config.WS_MAX_MESSAGE_BYTES,
    perMessageDeflate: false,
  })
  const heartbeat = new WsHeartbeat(deps.config.WS_PING_INTERVAL_MS)
  const clientMessageSchema = clientMessageSchemaFor(deps.config.WS_MAX_SUBSCRIPTIONS)

  async function upgrade(request: UpgradeRequest): Promise<void> {
    const { req, socket, head, principal, jobId } = request
    let slots: SlotLease
    try {
      slots = await deps.slots.acquire(principal)
    } catch (error) {
      if (!(error instanceof AppError)) throw error
      return request.refuse(error)
    }
    // Without verifyClient, ws completes (or aborts) the handshake before handleUpgrade()
    // returns: the connection is in the registry by then, and the slot can go.
    try {
      wss.handleUpgrade(req, socket, head, (ws) => {
        request.opened(new Promise((resolve) => ws.once('close', () => resolve())))
        onConnection(ws, principal, jobId, slots)
      })
    } finally {
      slots.release() // unless the connection holds them
    }
  }

  function onConnection(
    ws: WebSocket,
    principal: Principal,
    singleJob: string | undefined,
    slots: SlotLease,
  ): void {
    const connection = new WsConnection(
      ws,
      {
        tenantId: principal.tenantId,
        slots,
        ownerId: principal.role === 'admin' ? undefined : principal.userId,
        highWaterBytes: deps.config.STREAM_HIGH_WATER_BYTES,
        maxBufferedBytes: 8 * deps.config.STREAM_HIGH_WATER_BYTES,
        onWrite: deps.onWsBytes,
        closeWhenIdle: singleJob !== undefined,
      },
      deps.registry,
    )
    heartbeat.add(connection)
    if (singleJob) {
      void subscribe(connection, principal, [singleJob], {}).catch(logFailure)
      ws.on('message', () => undefined)
      return
    }
    // One message at a time, up to where its jobs are prepared (the rate check awaits): an
    // unsubscribe never overtakes the subscribe sent before it. The reads still overlap.
    let turn = Promise.resolve()
    ws.on('message', (data: RawData, isBinary: boolean) => {
      turn = turn.then(() => handleMessage(connection, principal, data, isBinary)).catch(logFailure)
    })
  }

  function logFailure(error: unknown): void {
    deps.logger.warn({ err: error }, 'websocket message failed')
  }

  async function handleMessage(
    connection: WsConnection,
    principal: Principal,
    data: RawData,
    isBinary: boolean,
  ): Promise<void> {
    let parsed: z.infer<ReturnType<typeof clientMessageSchemaFor>> | undefined
    if (!isBinary) {
      try {
        const result = clientMessageSchema.safeParse(JSON.parse(data.toString()))
        if (result.success) parsed = result.data
        else
          return badMessage(
            connection,
            `Invalid message: ${result.error.issues[0]?.message ?? 'unknown shape'}.`,
          )
      } catch {
        return badMessage(connection, 'Messages must be JSON text.')
      }
    }
    if (!parsed) return badMessage(connection, 'Messages must be JSON text.')
    const mux = connection.mux
    if (parsed.op === 'unsubscribe') {
      for (const id of parsed.jobs ?? []) mux.unsubscribe(id.toLowerCase())
      if (parsed.feed) mux.closeFeed()
      return
    }
    // A subscribe reads its jobs, as a request would: it counts what that read costs.
    try {
      await deps.rateLimits?.charge(principal, subscriptionCost(parsed.jobs?.length ?? 1))
    } catch (error) {
      if (!(error instanceof AppError)) throw error
      return mux.error(error.status, error.message)
    }
    if (parsed.feed) {
      if (principal.jobId !== undefined)
        mux.error(403, 'A watch token opens one job; it cannot open the tenant feed.')
      else mux.openFeed((watcher) => deps.hub.watchFeed(principal.tenantId, watcher))
    }
    if (parsed.jobs)
      void subscribe(connection, principal, parsed.jobs, parsed.since ?? {}).catch(logFailure)
  }

  async function subscribe(
    connection: WsConnection,
    principal: Principal,
    ids: string[],
    since: Record<string, number>,
  ) {
    const mux = connection.mux
    const sinceOf = new Map(Object.entries(since).map(([id, v]) => [id.toLowerCase(), v]))
    let failures: SubscribeFailure[]
    try {
      const { authorised, refused } = await subscribeJobs(
        deps,
        principal,
        mux,
        ids,
        deps.config.WS_MAX_SUBSCRIPTIONS,
      )
      for (const { sub, watch } of authorised) {
        const resumeFrom = sinceOf.get(sub.jobId)
        mux.start(
          sub,
          watch,
          resumeFrom !== undefined && resumeFrom >= 1 && resumeFrom <= watch.state.version
            ? resumeFrom
            : undefined,
        )
      }
      failures = refused.map(({ job, error }) => ({
        job,
        status: error.status,
        detail: error.message,
      }))
    } catch (error) {
      // The authorising read failed: every job of the message is refused, the socket stays.
      const known = translateDbError(error)
      if (!(known instanceof AppError) || known.status >= 500)
        deps.logger.warn({ err: error }, 'websocket subscribe failed')
      const detail = known instanceof AppError ? known.message : 'Could not subscribe; try again.'
      const status = known instanceof AppError ? known.status : 500
      failures = ids.map((job) => ({ job, status, detail }))
    }
    sendFailures(mux, failures)
    if (ids.length > 0 && mux.size === 0 && !mux.hasFeed) connection.onIdle()
  }

  /**
   * One `error` message per subscribe message, however many of its jobs failed: a single
   * failure names its job; several are listed in `jobs` (as on /v1/events), under the
   * highest of their statuses.
   */
  function sendFailures(mux: Multiplexer, failures: SubscribeFailure[]): void {
    const [first] = failures
    if (!first) return
    if (failures.length === 1) return mux.error(first.status, first.detail, first.job)
    const status = Math.max(...failures.map((f) => f.status))
    mux.send({ type: 'error', status, detail: 'Some jobs cannot be watched.', jobs: failures })
  }

  function badMessage(connection: WsConnection, detail: string): void {
    connection.badMessages++
    connection.mux.error(400, detail)
    if (connection.badMessages >= deps.config.WS_MAX_BAD_MESSAGES) {
      connection.socket.close(WS_CLOSE.policy, 'too many invalid messages')
    }
  }

  return {
    upgrade,
    close() {
      heartbeat.stop()
      for (const client of wss.clients) client.close(WS_CLOSE.goingAway, 'server shutting down')
      wss.close()
    },
  }
}
