// The one place that writes application/problem+json (RFC 9457). Routes throw errors from
// src/errors.ts; body-parser and unknown errors are mapped here. A 500 says nothing about
// SQL or internals; it is logged with the request id.
import type { ErrorRequestHandler, RequestHandler, Response } from 'express'
import type { ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import {
  AppError,
  PayloadTooLargeError,
  RouteNotFoundError,
  UnsupportedMediaTypeError,
  ValidationError,
} from '../errors.js'
import { translateDbError } from '../db/errors.js'
import { HEADER, MEDIA_TYPE, PROBLEM_BASE } from '../protocol/http.js'
import type { Logger } from '../telemetry/logger.js'

export interface ProblemDocument {
  type: string
  title: string
  status: number
  detail: string
  instance?: string
  [extension: string]: unknown
}

export function toProblem(error: AppError, instance?: string): ProblemDocument {
  return {
    type: PROBLEM_BASE + error.type,
    title: error.title,
    status: error.status,
    detail: error.message,
    ...(instance === undefined ? {} : { instance }),
    ...error.extensions,
  }
}

/** The status, headers and body of a problem response: what every sink below writes. */
export function problemResponse(
  error: AppError,
  instance?: string,
): { status: number; headers: Record<string, string>; body: string } {
  const body = JSON.stringify(toProblem(error, instance))
  return {
    status: error.status,
    headers: {
      ...error.headers,
      'content-type': MEDIA_TYPE.problem,
      'cache-control': 'no-store',
      'content-length': String(Buffer.byteLength(body)),
    },
    body,
  }
}

/** Writes a problem on a node response (express routes, the edge, before a stream opens). */
export function writeProblem(res: ServerResponse, error: AppError, instance?: string): void {
  if (res.headersSent) {
    res.destroy()
    return
  }
  const { status, headers, body } = problemResponse(error, instance)
  res.statusCode = status
  for (const [name, value] of Object.entries(headers)) res.setHeader(name, value)
  res.end(body)
}

/**
 * Answers a refused WebSocket upgrade on its raw socket with the same problem response, the
 * `headers` every response carries first (security headers, request id), and closes it.
 */
export function writeUpgradeProblem(
  socket: Duplex,
  error: AppError,
  headers: ReadonlyArray<readonly [string, string]>,
): void {
  const problem = problemResponse(error)
  const lines = [`HTTP/1.1 ${problem.status} ${error.title}`]
  for (const [name, value] of headers) lines.push(`${name}: ${value}`)
  for (const [name, value] of Object.entries(problem.headers)) lines.push(`${name}: ${value}`)
  lines.push('connection: close')
  socket.end(`${lines.join('\r\n')}\r\n\r\n${problem.body}`)
}

interface BodyParserError {
  type?: string
  status?: number
  expose?: boolean
}

/** Maps anything thrown to an AppError, or undefined for a real 500. */
export function asAppError(error: unknown): AppError | undefined {
  const translated = translateDbError(error)
  if (translated instanceof AppError) return translated
  const parserError = error as BodyParserError
  switch (parserError?.type) {
    case 'entity.too.large':
      return new PayloadTooLargeError('The request body is larger than the limit.')
    case 'entity.parse.failed':
      return new ValidationError('The request body is not valid JSON.', [
        { name: 'body', reason: 'invalid JSON' },
      ])
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return new UnsupportedMediaTypeError('Send the body as UTF-8 JSON.')
    case 'request.aborted':
    case 'request.size.invalid':
    case 'stream.encoding.set':
    case 'parameters.too.many':
      return new ValidationError('The request body could not be read.')
  }
  if (error instanceof URIError)
    return new ValidationError('The URL is not correctly percent-encoded.')
  // Other body-parser failures (e.g. a corrupt gzip body) are http-errors with no `type`.
  switch (parserError?.status) {
    case 400:
      return new ValidationError('The request body could not be read.', [
        { name: 'body', reason: 'unreadable (check Content-Encoding and Content-Length)' },
      ])
    case 413:
      return new PayloadTooLargeError('The request body is larger than the limit.')
    case 415:
      return new UnsupportedMediaTypeError('Send the body as UTF-8 JSON.')
  }
  return undefined
}

/**
 * The one way an error becomes a response, for express and the edge: an AppError (or what
 * maps to one) as its problem, anything else as a 500 that says nothing about internals.
 * Both 5xx kinds are logged with the request id.
 */
export function answerError(
  logger: Logger,
  res: ServerResponse,
  error: unknown,
  instance: string,
  requestId: unknown,
): void {
  const appError = asAppError(error)
  if (appError) {
    // A 503 for a database that cannot answer now: its cause is worth a line.
    if (appError.status >= 500) logger.warn({ err: error, reqId: requestId }, appError.title)
    writeProblem(res, appError, instance)
    return
  }
  logger.error({ err: error, reqId: requestId }, 'unhandled error')
  writeProblem(res, new InternalError(), instance)
}

export function problemHandler(logger: Logger): ErrorRequestHandler {
  return (error: unknown, req, res: Response, _next) => {
    answerError(logger, res, error, req.originalUrl.split('?')[0]!, requestIdOf(res))
  }
}

export const notFoundHandler: RequestHandler = (req, _res, next) => {
  next(new RouteNotFoundError(`There is no ${req.method} ${req.path}.`))
}

class InternalError extends AppError {
  readonly status = 500
  readonly type = 'internal-error'
  readonly title = 'Internal server error'
  constructor() {
    super(
      'Something went wrong on our side. Quote the request id (X-Request-Id) when you report it.',
    )
  }
}

/** The request id the response echoes (set when the request started). */
function requestIdOf(res: ServerResponse): unknown {
  return res.getHeader(HEADER.requestId)
}
