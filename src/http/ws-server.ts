// WebSocket endpoints on the HTTP server's `upgrade` event: `GET /v1/ws` (multiplexed,
// SPEC §9) and `GET /v1/jobs/:id` with an upgrade (one job, the form existing clients use).
// Authentication, caps and the first authorising read happen before or right after the
// handshake; a job that cannot be subscribed gets an `error` message and the connection
// stays open. Repeated garbage closes the connection with 1008.
import type { IncomingMessage, Server } from 'node:http'
import type { Duplex } from 'node:stream'
import { WebSocketServer, type RawData, type WebSocket } from 'ws'
import { z } from 'zod'
import type { Config } from '../config/index.js'
import { translateDbError } from '../db/errors.js'
import type { Principal } from '../db/tenant-transaction.js'
import { AppError, RouteNotFoundError, ValidationError } from '../errors.js'
import type { Multiplexer } from '../transports/multiplexer.js'
import { WsConnection, WsHeartbeat, WS_CLOSE } from '../transports/ws.js'
import type { Authenticator } from './auth.js'
import type { RateLimits } from './rate-limit.js'
import { toProblem } from './problem.js'
import { jobIdSchema } from './schemas.js'
import { reserveStream, subscribeJob, userKeyOf, type StreamDeps } from './subscribe.js'
import type { Logger } from '../telemetry/logger.js'

export interface WsServerDeps extends StreamDeps {
  auth: Authenticator
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
  rateLimits?: Pick<RateLimits, 'checkUpgrade' | 'checkMessage'>
  onWsBytes?(bytes: number): void
  onCapRejected?(): void
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

const SINGLE_JOB_PATH = /^\/v1\/jobs\/([^/?#]+)\/?$/

export function attachWebSockets(server: Server, deps: WsServerDeps): { close(): void } {
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: deps.config.WS_MAX_MESSAGE_BYTES,
    perMessageDeflate: false,
  })
  const heartbeat = new WsHeartbeat(deps.config.WS_PING_INTERVAL_MS)
  const clientMessageSchema = clientMessageSchemaFor(deps.config.WS_MAX_SUBSCRIPTIONS)

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    void handleUpgrade(req, socket, head).catch((error: unknown) => {
      deps.logger.warn({ err: error }, 'websocket upgrade failed')
      socket.destroy()
    })
  })

  async function handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const path = (req.url ?? '/').split('?')[0]!
    const single = SINGLE_JOB_PATH.exec(path)
    if (path !== '/v1/ws' && !single)
      return rejectUpgrade(socket, new RouteNotFoundError(`No WebSocket endpoint at ${path}.`))
    let principal: Principal | undefined
    let singleJob: string | undefined
    let release: () => void
    try {
      principal = await deps.auth
        .authenticate(req, 'header-or-query')
        .catch(async (error: unknown) => {
          // A failed authentication counts against the address, as on every other route.
          await deps.rateLimits?.checkUpgrade(undefined, req.socket.remoteAddress)
          throw error
        })
      await deps.rateLimits?.checkUpgrade(principal, req.socket.remoteAddress)
      if (single) {
        const parsed = jobIdSchema.safeParse(decodeURIComponent(single[1]!))
        if (!parsed.success)
          throw new ValidationError('path.id: expected a UUID', [
            { name: 'path.id', reason: 'expected a UUID' },
          ])
        singleJob = parsed.data
      }
      release = reserveStream(deps, principal, deps.onCapRejected)
    } catch (error) {
      return rejectUpgrade(
        socket,
        error instanceof AppError ? error : new ValidationError('Bad WebSocket request.'),
      )
    }
    const authorised = principal
    // Without verifyClient, ws completes (or aborts) the handshake before handleUpgrade()
    // returns: the connection is in the registry by then, and the slot can go.
    try {
      wss.handleUpgrade(req, socket, head, (ws) => onConnection(ws, authorised, singleJob))
    } finally {
      release()
    }
  }

  function onConnection(ws: WebSocket, principal: Principal, singleJob: string | undefined): void {
    const connection = new WsConnection(
      ws,
      {
        tenantId: principal.tenantId,
        userKey: userKeyOf(principal),
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
      void subscribeJobs(connection, principal, [singleJob], {}).catch(logFailure)
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
    // A subscribe reads each job, as a request would: it counts against the request limits.
    try {
      await deps.rateLimits?.checkMessage(principal)
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
      void subscribeJobs(connection, principal, parsed.jobs, parsed.since ?? {}).catch(logFailure)
  }

  async function subscribeJobs(
    connection: WsConnection,
    principal: Principal,
    ids: string[],
    since: Record<string, number>,
  ) {
    const mux = connection.mux
    const failures: SubscribeFailure[] = []
    await Promise.all(
      ids.map(async (raw) => {
        const parsed = jobIdSchema.safeParse(raw)
        if (!parsed.success) {
          failures.push({ job: raw, status: 400, detail: 'Not a job id (expected a UUID).' })
          return
        }
        const id = parsed.data
        if (mux.has(id)) return
        if (mux.reserved >= deps.config.WS_MAX_SUBSCRIPTIONS) {
          failures.push({
            job: id,
            status: 429,
            detail: `A connection may watch at most ${deps.config.WS_MAX_SUBSCRIPTIONS} jobs.`,
          })
          return
        }
        const watcher = mux.prepare(id)
        try {
          const handle = await subscribeJob(deps, principal, id, watcher)
          const resumeFrom = since[id] ?? since[raw]
          mux.start(
            watcher,
            handle,
            resumeFrom !== undefined && resumeFrom >= 1 && resumeFrom <= handle.state.version
              ? resumeFrom
              : undefined,
          )
        } catch (error) {
          mux.abandon(watcher)
          const known = translateDbError(error)
          if (!(known instanceof AppError) || known.status >= 500)
            deps.logger.warn({ err: error }, 'websocket subscribe failed')
          failures.push(
            known instanceof AppError
              ? { job: id, status: known.status, detail: known.message }
              : { job: id, status: 500, detail: 'Could not subscribe; try again.' },
          )
        }
      }),
    )
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
    close() {
      heartbeat.stop()
      for (const client of wss.clients) client.close(WS_CLOSE.goingAway, 'server shutting down')
      wss.close()
    },
  }
}

/** Answers a refused upgrade with a plain HTTP problem response and closes the socket. */
function rejectUpgrade(socket: Duplex, error: AppError): void {
  const body = JSON.stringify(toProblem(error))
  const headers = [
    `HTTP/1.1 ${error.status} ${error.title}`,
    'Content-Type: application/problem+json',
    `Content-Length: ${Buffer.byteLength(body)}`,
    ...Object.entries(error.headers).map(([k, v]) => `${k}: ${v}`),
    'Connection: close',
  ]
  socket.end(`${headers.join('\r\n')}\r\n\r\n${body}`)
}
