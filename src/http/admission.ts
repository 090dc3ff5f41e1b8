// Admits a request, once, for every HTTP path jobwire serves (the express routes, the edge's
// hot routes, WebSocket upgrades): authenticate its token, then count it against the rate
// limits — a failed token against its client address, so guessing is throttled, a valid one
// against its user and tenant (or its job, for a watch token). The RateLimit-* headers come
// back for the response; a refusal is an AppError that carries them.
import type { IncomingMessage } from 'node:http'
import type { Principal } from '../db/tenant-transaction.js'
import { UnauthorizedError } from '../errors.js'
import type { Authenticator, TokenSource } from './auth.js'
import type { HeaderPairs, RateLimits } from './rate-limit.js'

export interface Admission {
  principal: Principal
  /** RateLimit-* of the limit the client will hit first. */
  rateHeaders: HeaderPairs
}

export interface Admitter {
  /**
   * Resolves the caller, or throws UnauthorizedError (counted against `clientAddress`) or
   * TooManyRequestsError; both carry the RateLimit-* headers.
   */
  admit(
    req: IncomingMessage,
    source: TokenSource,
    clientAddress: string | undefined,
  ): Promise<Admission>
  /**
   * A request without any token on a route that serves one job by its UUID alone
   * (COMPAT_ANONYMOUS_READ): counted against its client address, then `resolve` says who it
   * acts for (it throws a 400 or a 404 like any read).
   */
  admitAnonymous(
    jobId: string,
    resolve: (jobId: string) => Promise<Principal>,
    clientAddress: string | undefined,
  ): Promise<Admission>
}

export function createAdmitter(auth: Authenticator, limits: RateLimits): Admitter {
  return {
    async admit(req, source, clientAddress) {
      let principal: Principal
      try {
        principal = await auth.authenticate(req, source)
      } catch (error) {
        if (!(error instanceof UnauthorizedError)) throw error
        const rateHeaders = await limits.admit(undefined, clientAddress)
        for (const [name, value] of rateHeaders) error.headers[name] = value
        throw error
      }
      return { principal, rateHeaders: await limits.admit(principal, clientAddress) }
    },
    async admitAnonymous(jobId, resolve, clientAddress) {
      const rateHeaders = await limits.admit(undefined, clientAddress)
      return { principal: await resolve(jobId), rateHeaders }
    },
  }
}
