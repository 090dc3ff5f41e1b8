// Express glue for the Authenticator: authenticates a request once (the first handler of
// the rate-limit chain, src/http/rate-limit.ts) and keeps the principal on the request for
// the handlers.
import type { Request } from 'express'
import type { Principal } from '../db/tenant-transaction.js'
import type { Authenticator, TokenSource } from './auth.js'
import { MEDIA_TYPE, QUERY } from '../protocol/http.js'

const PRINCIPAL = Symbol('jobwire.principal')

type RequestWithPrincipal = Request & { [PRINCIPAL]?: Principal }

/** Authenticates a /v1 request; stream, wait and WebSocket requests may use ?token=. */
export async function authenticateRequest(auth: Authenticator, req: Request): Promise<Principal> {
  const principal = await auth.authenticate(req, tokenSourceFor(req))
  ;(req as RequestWithPrincipal)[PRINCIPAL] = principal
  return principal
}

export function hasPrincipal(req: Request): boolean {
  return (req as RequestWithPrincipal)[PRINCIPAL] !== undefined
}

const STREAM_PATH = /^\/v1\/(?:events|ws|jobs\/[^/]+\/(?:events|wait))\/?$/

export function tokenSourceFor(req: Request): TokenSource {
  if (req.method !== 'GET') return 'header'
  if (STREAM_PATH.test(req.baseUrl + req.path) || wantsStream(req)) return 'header-or-query'
  return 'header'
}

/** `GET /v1/jobs/:id` streams with Accept: text/event-stream, ?stream=true or a WebSocket upgrade. */
export function wantsStream(req: Request): boolean {
  const stream = req.query[QUERY.stream]
  return (
    stream === 'true' ||
    stream === '1' ||
    (req.headers.accept ?? '').includes(MEDIA_TYPE.eventStream) ||
    (req.headers.upgrade ?? '').toLowerCase() === 'websocket'
  )
}

/** The principal, when the request was authenticated (logging asks before and after). */
export function findPrincipal(req: Request): Principal | undefined {
  return (req as RequestWithPrincipal)[PRINCIPAL]
}

/** The principal set by authenticateRequest(); a route without it is a programming error. */
export function principalOf(req: Request): Principal {
  const principal = findPrincipal(req)
  if (!principal)
    throw new Error(`route ${req.method} ${req.path} is not behind the authentication middleware`)
  return principal
}
