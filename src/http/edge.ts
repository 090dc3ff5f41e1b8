// The lean edge: owns node:http's `request` and `upgrade` events for the routes that carry
// the load, and hands every other request to express (create, list, cancel, docs, metrics,
// the live page). The hot routes:
//   GET|HEAD /v1/jobs/:id          the document; its SSE stream with Accept:
//                                  text/event-stream or ?stream=true
//   GET|HEAD /v1/jobs/:id/events   the SSE stream of one job
//   GET|HEAD /v1/jobs/:id/wait     long-poll
//   GET|HEAD /v1/events            many jobs (?jobs=), or the tenant feed
//   upgrade  /v1/ws, /v1/jobs/:id  WebSocket
// Other routes (the compatibility routes, docs/compat.md) plug in as EdgeRoute and
// EdgeUpgradeRoute values, each with its own template, token source and handler, and go
// through the same steps.
// Each request gets, once and in this order: a request id, the frozen security headers, the
// CORS headers for its Origin (src/http/cors.ts, computed once), one admission
// (authentication and one rate-limit check, src/http/admission.ts), its route's
// handler (which validates with the routes' zod schemas), and one problem writer for every
// failure. Its log line is written when it ends; a stream logs one line when it opens and
// one when it closes. Paths match as express matches them (case-insensitive, optional
// trailing slash), so a client cannot tell which side served it (docs/decisions.md, "The
// lean edge"). The edge also answers every CORS preflight, whatever its path, before any
// admission: a preflight carries no token and is not charged.
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import querystring, { type ParsedUrlQuery } from 'node:querystring'
import type { Principal } from '../db/tenant-transaction.js'
import type { AppError } from '../errors.js'
import { ForbiddenError, RouteNotFoundError, ValidationError } from '../errors.js'
import { HEADER, MEDIA_TYPE, QUERY } from '../protocol/http.js'
import type { Logger } from '../telemetry/logger.js'
import type { Admitter } from './admission.js'
import { carriesToken, type TokenSource } from './auth.js'
import { clientAddressOf, type TrustProxy } from './client-address.js'
import type { Cors } from './cors.js'
import { answerError, asAppError, writeUpgradeProblem } from './problem.js'
import {
  logCompleted,
  logStreamOpened,
  logWhenDone,
  startTrace,
  type RequestTrace,
} from './request-log.js'
import { noQuerySchema } from './schemas.js'
import type { HeaderList } from './security-headers.js'
import { parseRequest } from './validation.js'

/** One admitted request on a hot route, as its handler sees it. */
export interface EdgeRequest {
  readonly req: IncomingMessage
  readonly res: ServerResponse
  readonly principal: Principal
  /** The `:id` path segment, percent-decoded (each handler validates it). */
  readonly id: string | undefined
  /** Parsed as express's "simple" query parser does (node:querystring). */
  readonly query: ParsedUrlQuery
  /** The path, for a problem's `instance`. */
  readonly path: string
  readonly isHead: boolean
  /**
   * The headers every answer carries — security headers, CORS, X-Request-Id, RateLimit-* — as a
   * flat name, value, … list: passed to writeHead() with the answer's own, never set one by
   * one, so a long-lived response keeps only its serialised head.
   */
  readonly head: readonly string[]
  /** res.writeHead(status) with `head` and then `own`. */
  writeHead(status: number, own?: readonly string[]): ServerResponse
  /** The response is now a stream: log that it opened (its last line comes when it closes). */
  streamOpened(): void
}

export type EdgeHandler = (request: EdgeRequest) => Promise<void>

export interface EdgeHandlers {
  document: EdgeHandler
  jobStream: EdgeHandler
  wait: EdgeHandler
  events: EdgeHandler
}

/**
 * A route plugged into the edge: matched after the v1 routes, admitted, logged and answered
 * like them. `anonymous`, when set, resolves who a request without any token acts for
 * (COMPAT_ANONYMOUS_READ); without it such a request is a 401.
 */
export interface EdgeRoute {
  /** The path as express writes it (`/api/jobs/:id`): the log line's route. */
  readonly template: string
  /** Built from the template by routePattern(): group 1 is the raw `:id`. */
  readonly pattern: RegExp
  readonly tokenSource: TokenSource
  readonly anonymous?: (id: string) => Promise<Principal>
  readonly handler: EdgeHandler
}

/** A WebSocket upgrade on one job's path, taken by `upgrade` like `/v1/jobs/:id`'s. */
export interface EdgeUpgradeRoute {
  readonly template: string
  readonly pattern: RegExp
  readonly anonymous?: (id: string) => Promise<Principal>
}

/**
 * A template's path as express routes it: case-insensitive, an optional trailing slash,
 * `:id` any one segment.
 */
export function routePattern(template: string): RegExp {
  const source = template
    .split('/')
    .map((part) => (part === ':id' ? '([^/]+?)' : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
    .join('\\/')
  return new RegExp(`^${source}\\/?$`, 'i')
}

/** An admitted WebSocket upgrade; the handler owns the socket from here. */
export interface UpgradeRequest {
  readonly req: IncomingMessage
  readonly socket: Duplex
  readonly head: Buffer
  readonly principal: Principal
  /** Set for `/v1/jobs/:id` (validated): the one job the socket streams. */
  readonly jobId: string | undefined
  /** Refuses the upgrade with a problem response (before the handshake). */
  refuse(error: AppError): void
  /** Call when the handshake is done; `closed` resolves when the socket is gone. */
  opened(closed: Promise<void>): void
}

export interface EdgeOptions {
  admitter: Admitter
  logger: Logger
  securityHeaders: HeaderList
  /** CORS_ORIGINS's policy, shared with express (src/http/cors.ts). */
  cors: Cors
  trustProxy: TrustProxy
  handlers: EdgeHandlers
  /** Validates `/v1/jobs/:id`'s id for an upgrade (the same schema as the HTTP routes). */
  parseJobId(id: string): string
  upgrade(request: UpgradeRequest): Promise<void>
  /** Routes served after the v1 ones (GET and HEAD). */
  routes?: readonly EdgeRoute[]
  /** One-job WebSocket upgrades besides `/v1/jobs/:id`. */
  upgradeRoutes?: readonly EdgeUpgradeRoute[]
}

export interface Edge {
  /** Serves a hot route and returns true; returns false for everything else (express). */
  request(req: IncomingMessage, res: ServerResponse): boolean
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void
}

/** The hot routes as METHOD path templates (the OpenAPI test checks they are documented). */
export const EDGE_ROUTES = [
  'get /v1/jobs/{id}',
  'get /v1/jobs/{id}/events',
  'get /v1/jobs/{id}/wait',
  'get /v1/events',
  'get /v1/ws',
] as const

interface Route {
  template: string
  tokenSource: TokenSource
  handler: EdgeHandler
  anonymous?: (id: string) => Promise<Principal>
}

// As express routes them: case-insensitive, an optional trailing slash, `:id` any one segment.
const JOB_PATH = /^\/v1\/jobs\/([^/]+?)(\/events|\/wait)?\/?$/i
const EVENTS_PATH = /^\/v1\/events\/?$/i
// Upgrades keep their own, stricter match (exact case, as before the edge).
const WS_PATH = '/v1/ws'
const WS_JOB_PATH = /^\/v1\/jobs\/([^/?#]+)\/?$/

const EMPTY_QUERY: ParsedUrlQuery = Object.freeze(Object.create(null) as ParsedUrlQuery)

export function createEdge(options: EdgeOptions): Edge {
  const { admitter, logger, handlers, cors } = options
  const securityHead = options.securityHeaders.flat()
  const DOCUMENT: Route = {
    template: '/v1/jobs/:id',
    tokenSource: 'header',
    handler: handlers.document,
  }
  const JOB_STREAM: Route = {
    template: '/v1/jobs/:id',
    tokenSource: 'header-or-query',
    handler: handlers.jobStream,
  }
  const JOB_EVENTS: Route = { ...JOB_STREAM, template: '/v1/jobs/:id/events' }
  const JOB_WAIT: Route = {
    template: '/v1/jobs/:id/wait',
    tokenSource: 'header-or-query',
    handler: handlers.wait,
  }
  const EVENTS: Route = {
    template: '/v1/events',
    tokenSource: 'header-or-query',
    handler: handlers.events,
  }
  const extraRoutes = options.routes ?? []
  const extraUpgrades = options.upgradeRoutes ?? []

  function match(
    path: string,
    req: IncomingMessage,
    query: ParsedUrlQuery,
  ): { route: Route; rawId?: string } | undefined {
    if (EVENTS_PATH.test(path)) return { route: EVENTS }
    const job = JOB_PATH.exec(path)
    if (!job) {
      for (const route of extraRoutes) {
        const found = route.pattern.exec(path)
        if (found) return { route, rawId: found[1] }
      }
      return undefined
    }
    const rawId = job[1]!
    switch (job[2]?.toLowerCase()) {
      case '/events':
        return { route: JOB_EVENTS, rawId }
      case '/wait':
        return { route: JOB_WAIT, rawId }
      default:
        return { route: wantsStream(req, query) ? JOB_STREAM : DOCUMENT, rawId }
    }
  }

  async function serve(
    route: Route,
    rawId: string | undefined,
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    query: ParsedUrlQuery,
  ): Promise<void> {
    const trace = startTrace(req)
    trace.route = route.template
    logWhenDone(logger, req, res, trace)
    trace.clientAddress = clientAddressOf(req, options.trustProxy)
    const head = [
      ...securityHead,
      ...cors.headersFor(req.headers.origin),
      HEADER.requestId,
      trace.id,
    ]
    try {
      // The id is decoded after admission (a 401 before a 400), unless it is the credential.
      const { principal, rateHeaders } =
        route.anonymous && rawId !== undefined && !carriesToken(req, route.tokenSource)
          ? await admitter.admitAnonymous(
              decodeSegment(rawId),
              route.anonymous,
              trace.clientAddress,
            )
          : await admitter.admit(req, route.tokenSource, trace.clientAddress)
      trace.principal = principal
      for (const [name, value] of rateHeaders) head.push(name, value)
      await route.handler({
        req,
        res,
        principal,
        id: rawId === undefined ? undefined : decodeSegment(rawId),
        query,
        path,
        isHead: req.method === 'HEAD',
        head,
        writeHead: (status, own) => res.writeHead(status, own ? [...head, ...own] : head),
        streamOpened: () => logStreamOpened(logger, req, trace),
      })
    } catch (error) {
      // The problem's own headers (a 401's or a 429's RateLimit-*) then replace these.
      if (!res.headersSent)
        for (let i = 0; i < head.length; i += 2) res.setHeader(head[i]!, head[i + 1]!)
      answerError(logger, res, error, path, trace.id)
    }
  }

  async function admitUpgrade(
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    path: string,
    trace: RequestTrace,
  ): Promise<void> {
    let single = WS_JOB_PATH.exec(path)
    let template = '/v1/jobs/:id'
    let anonymous: EdgeUpgradeRoute['anonymous']
    if (!single && path !== WS_PATH)
      for (const route of extraUpgrades) {
        single = route.pattern.exec(path)
        if (!single) continue
        ;({ template, anonymous } = route)
        break
      }
    let status = 101
    const refuse = (error: AppError) => {
      status = error.status
      writeUpgradeProblem(socket, error, responseHeaders(req, trace))
      logCompleted(logger, req, trace, status, true)
    }
    if (path !== WS_PATH && !single)
      return refuse(new RouteNotFoundError(`No WebSocket endpoint at ${path}.`))
    if (!cors.allowsUpgrade(req))
      return refuse(
        new ForbiddenError(
          `The origin ${req.headers.origin} is not allowed to open WebSockets here (CORS_ORIGINS).`,
        ),
      )
    trace.route = single ? template : WS_PATH
    trace.clientAddress = clientAddressOf(req, options.trustProxy)
    let principal: Principal
    let jobId: string | undefined
    try {
      ;({ principal } =
        anonymous && single && !carriesToken(req, 'header-or-query')
          ? await admitter.admitAnonymous(decodeSegment(single[1]!), anonymous, trace.clientAddress)
          : await admitter.admit(req, 'header-or-query', trace.clientAddress))
      trace.principal = principal
      if (single) jobId = options.parseJobId(decodeSegment(single[1]!))
      const q = (req.url ?? '').indexOf('?')
      if (q >= 0) parseRequest(noQuerySchema, querystring.parse(req.url!.slice(q + 1)), 'query')
    } catch (error) {
      return refuse(asAppError(error) ?? new ValidationError('Bad WebSocket request.'))
    }
    await options.upgrade({
      req,
      socket,
      head,
      principal,
      jobId,
      refuse,
      opened: (closed) => {
        logStreamOpened(logger, req, trace)
        void closed.then(() => logCompleted(logger, req, trace, status, true))
      },
    })
  }

  function responseHeaders(
    req: IncomingMessage,
    trace: RequestTrace,
  ): Array<readonly [string, string]> {
    const pairs: Array<readonly [string, string]> = [...options.securityHeaders]
    const own = cors.headersFor(req.headers.origin)
    for (let i = 0; i < own.length; i += 2) pairs.push([own[i]!, own[i + 1]!])
    pairs.push([HEADER.requestId, trace.id])
    return pairs
  }

  /** A CORS preflight, on any path: no token, no rate limit, one log line. */
  function preflight(req: IncomingMessage, res: ServerResponse): boolean {
    const trace = startTrace(req)
    const head = [...securityHead, HEADER.requestId, trace.id]
    if (!cors.preflight(req, res, head)) return false
    trace.route = 'preflight'
    trace.clientAddress = clientAddressOf(req, options.trustProxy)
    logCompleted(logger, req, trace, res.statusCode, true)
    return true
  }

  return {
    request(req, res) {
      const method = req.method
      if (method === 'OPTIONS') return preflight(req, res)
      if (method !== 'GET' && method !== 'HEAD') return false
      const url = req.url ?? '/'
      const q = url.indexOf('?')
      const path = q < 0 ? url : url.slice(0, q)
      const query = q < 0 ? EMPTY_QUERY : querystring.parse(url.slice(q + 1))
      const found = match(path, req, query)
      if (!found) return false
      void serve(found.route, found.rawId, req, res, path, query)
      return true
    },

    upgrade(req, socket, head) {
      const url = req.url ?? '/'
      const path = url.split('?')[0]!
      const trace = startTrace(req)
      admitUpgrade(req, socket, head, path, trace).catch((error: unknown) => {
        logger.warn({ err: error, reqId: trace.id }, 'websocket upgrade failed')
        socket.destroy()
      })
    },
  }
}

/** `GET /v1/jobs/:id` streams with Accept: text/event-stream or ?stream=true. */
export function wantsStream(req: IncomingMessage, query: ParsedUrlQuery): boolean {
  const stream = query[QUERY.stream]
  return (
    stream === 'true' ||
    stream === '1' ||
    (req.headers.accept ?? '').includes(MEDIA_TYPE.eventStream)
  )
}

/** A path segment, percent-decoded; a broken escape is a 400, as express answers it. */
function decodeSegment(raw: string): string {
  try {
    return decodeURIComponent(raw)
  } catch {
    throw new ValidationError('The URL is not correctly percent-encoded.')
  }
}
