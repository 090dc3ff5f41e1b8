// Express glue for admission (src/http/admission.ts): which token sources an express route
// takes, and the principal kept on the request for its handlers.
import type { Request } from 'express'
import type { Principal } from '../db/tenant-transaction.js'
import type { TokenSource } from './auth.js'

const PRINCIPAL = Symbol('jobwire.principal')

type RequestWithPrincipal = Request & { [PRINCIPAL]?: Principal }

export function setPrincipal(req: Request, principal: Principal): void {
  ;(req as RequestWithPrincipal)[PRINCIPAL] = principal
}

// The stream paths belong to the edge; one that reaches express anyway (a plain GET of
// /v1/ws, a stream path with another method) takes its token where the edge would.
const STREAM_PATH = /^\/v1\/(?:events|ws|jobs\/[^/]+\/(?:events|wait))\/?$/

export function tokenSourceFor(req: Request): TokenSource {
  if (req.method !== 'GET') return 'header'
  return STREAM_PATH.test(req.baseUrl + req.path) ? 'header-or-query' : 'header'
}

/** The principal, when the request was admitted (the request log asks at its end). */
export function findPrincipal(req: Request): Principal | undefined {
  return (req as RequestWithPrincipal)[PRINCIPAL]
}

/** The principal admission set; a route without it is a programming error. */
export function principalOf(req: Request): Principal {
  const principal = findPrincipal(req)
  if (!principal)
    throw new Error(`route ${req.method} ${req.path} is not behind the admission middleware`)
  return principal
}
