// One request log line per request, for the express routes and the edge alike, in one shape:
// `request completed` (or `request aborted`, or `request errored` at level error for a 5xx)
// with the request id, method, masked URL, client address, status, duration in ms, the
// matched route template and the caller's tenant and user. A stream logs one more line when
// it opens (`stream opened`); its `request completed` comes when it closes. No per-request
// child logger: a parked long-poll or an idle stream keeps only its RequestTrace.
import { randomUUID } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Principal } from '../db/tenant-transaction.js'
import { HEADER } from '../protocol/http.js'
import { redactUrl, type Logger } from '../telemetry/logger.js'

const REQUEST_ID = /^[\w\-.:]{1,128}$/

/** What the log line of a request needs, gathered while it is served. */
export interface RequestTrace {
  readonly id: string
  readonly startedAt: number
  /** The route template (`/v1/jobs/:id`), once matched. */
  route?: string
  principal?: Principal
  /** The client's address when a trusted proxy forwarded it (src/http/client-address.ts). */
  clientAddress?: string
}

/**
 * The client's X-Request-Id when it is usable, else a new one; echoed on the response (an
 * upgrade, which has none, sends it with its handshake answer).
 */
export function startTrace(req: IncomingMessage, res?: ServerResponse): RequestTrace {
  const given = req.headers[HEADER.requestId]
  const id = typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID()
  res?.setHeader(HEADER.requestId, id)
  return { id, startedAt: Date.now() }
}

function fields(req: IncomingMessage, trace: RequestTrace): Record<string, unknown> {
  const out: Record<string, unknown> = {
    req: {
      id: trace.id,
      method: req.method,
      url: redactUrl(req.url),
      remoteAddress: req.socket?.remoteAddress,
    },
  }
  if (trace.clientAddress !== undefined && trace.clientAddress !== req.socket?.remoteAddress)
    (out.req as Record<string, unknown>).clientAddress = trace.clientAddress
  if (trace.route !== undefined) out.route = trace.route
  if (trace.principal) {
    out.tenantId = trace.principal.tenantId
    out.userId = trace.principal.userId
  }
  return out
}

/** The request's last line: `isFinished` when the server ended the response, not the client. */
export function logCompleted(
  logger: Logger,
  req: IncomingMessage,
  trace: RequestTrace,
  statusCode: number,
  isFinished: boolean,
): void {
  // A parked long-poll or a stream ends in bursts: build nothing that will not be written.
  if (!logger.isLevelEnabled(statusCode >= 500 ? 'error' : 'info')) return
  const line = fields(req, trace)
  line.res = { statusCode }
  line.responseTime = Date.now() - trace.startedAt
  if (statusCode >= 500) {
    line.err = { type: 'Error', message: `failed with status code ${statusCode}` }
    logger.error(line, 'request errored')
  } else {
    logger.info(line, isFinished ? 'request completed' : 'request aborted')
  }
}

/** Logs the request once its response closed (finished, or cut by the client). */
export function logWhenDone(
  logger: Logger,
  req: IncomingMessage,
  res: ServerResponse,
  trace: RequestTrace,
): void {
  res.once('close', () =>
    logCompleted(logger, req, trace, res.statusCode, !req.readableAborted && res.writableEnded),
  )
}

export function logStreamOpened(logger: Logger, req: IncomingMessage, trace: RequestTrace): void {
  if (logger.isLevelEnabled('info')) logger.info(fields(req, trace), 'stream opened')
}
