// The CORS policy of every route, REST and streams alike, from CORS_ORIGINS (docs/production.md,
// "CORS"): the edge puts `headersFor()` into the flat head of each hot-route answer, express
// sets the same list on everything else, and the edge answers every preflight, whatever the
// path, before any authentication or rate limit. Bearer tokens, no cookies: never
// Access-Control-Allow-Credentials.
//   * a listed origin: Access-Control-Allow-Origin echoes it, with the exposed headers;
//   * `*` (alone): Access-Control-Allow-Origin: * on every answer, Origin or not;
//   * any other origin, or no Origin: no CORS header (the browser blocks the read).
// With a list of origins every answer says `Vary: Origin` (a cache must not hand one origin's
// answer to another); with no list, or `*`, the answers do not vary and nothing is added.
import type { IncomingMessage, ServerResponse } from 'node:http'
import {
  CORS_ALLOWED_HEADERS,
  CORS_EXPOSED_HEADERS,
  CORS_HEADER,
  HEADER,
} from '../protocol/http.js'

/** The methods the API answers (GET/HEAD reads and streams, POST create and cancel). */
const ALLOWED_METHODS = 'GET, HEAD, POST'
/** How long a browser may cache a preflight (Chromium caps this at 2 h). */
const PREFLIGHT_MAX_AGE_SECONDS = 7200

export interface Cors {
  /** The flat name, value, … list every answer to `origin` carries (often empty). */
  headersFor(origin: string | undefined): readonly string[]
  /** A preflight (OPTIONS with Access-Control-Request-Method): answered, true; else false. */
  preflight(req: IncomingMessage, res: ServerResponse, head: readonly string[]): boolean
  /**
   * Whether a WebSocket upgrade from `origin` may proceed: always without an Origin (not a
   * browser) or without CORS_ORIGINS; else a listed origin, `*`, or the service's own host.
   */
  allowsUpgrade(req: IncomingMessage): boolean
}

export function createCors(origins: readonly string[]): Cors {
  const isAny = origins.includes('*')
  const exposed = CORS_EXPOSED_HEADERS.join(', ')
  const forAny = Object.freeze([CORS_HEADER.allowOrigin, '*', CORS_HEADER.exposeHeaders, exposed])
  const vary = Object.freeze(isAny || origins.length === 0 ? [] : [HEADER.vary, 'Origin'])
  // One frozen list per listed origin, built once: a request only looks its origin up.
  const byOrigin = new Map<string, readonly string[]>(
    origins.map((origin) => [
      origin,
      Object.freeze([CORS_HEADER.allowOrigin, origin, CORS_HEADER.exposeHeaders, exposed, ...vary]),
    ]),
  )
  const preflightOwn = [
    CORS_HEADER.allowMethods,
    ALLOWED_METHODS,
    CORS_HEADER.allowHeaders,
    CORS_ALLOWED_HEADERS.join(', '),
    CORS_HEADER.maxAge,
    String(PREFLIGHT_MAX_AGE_SECONDS),
  ]

  function headersFor(origin: string | undefined): readonly string[] {
    if (isAny) return forAny
    if (origin === undefined) return vary
    return byOrigin.get(origin) ?? vary
  }

  return {
    headersFor,
    preflight(req, res, head) {
      if (req.method !== 'OPTIONS' || req.headers[CORS_HEADER.requestMethod] === undefined)
        return false
      const cors = headersFor(req.headers.origin)
      const isAllowed = cors.includes(CORS_HEADER.allowOrigin)
      // An origin not listed gets the same 204 without CORS headers: the browser refuses.
      res.writeHead(204, [...head, ...cors, ...(isAllowed ? preflightOwn : [])]).end()
      return true
    },
    allowsUpgrade(req) {
      const origin = req.headers.origin
      if (origin === undefined || origins.length === 0 || isAny || byOrigin.has(origin)) return true
      return URL.canParse(origin) && new URL(origin).host === req.headers.host
    },
  }
}
