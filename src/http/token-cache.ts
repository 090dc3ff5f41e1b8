// Remembers tokens that verified, so a client that sends the same token with every request
// (polling, reconnecting streams) is not verified again each time: signature checks and the
// passport strategy were ~5 % of CPU on GET /v1/jobs/:id in the benchmarks. An entry lives
// until the token expires, at most MAX_AGE_MS (a key removed from a JWKS stops working within
// that time); the cache holds at most MAX_ENTRIES tokens, dropping the oldest.
import type { Principal } from '../db/tenant-transaction.js'

const MAX_AGE_MS = 5 * 60 * 1000
const MAX_ENTRIES = 10_000

export class VerifiedTokenCache {
  private readonly entries = new Map<string, { principal: Principal; expiresAtMs: number }>()

  get(token: string, nowMs = Date.now()): Principal | undefined {
    const entry = this.entries.get(token)
    if (!entry) return undefined
    if (entry.expiresAtMs <= nowMs) {
      this.entries.delete(token)
      return undefined
    }
    return entry.principal
  }

  /** `expSeconds`: the token's `exp` claim, when it has one. */
  set(
    token: string,
    principal: Principal,
    expSeconds: number | undefined,
    nowMs = Date.now(),
  ): void {
    const expiresAtMs = Math.min(
      expSeconds === undefined ? Infinity : expSeconds * 1000,
      nowMs + MAX_AGE_MS,
    )
    if (expiresAtMs <= nowMs) return
    this.entries.delete(token)
    this.entries.set(token, { principal, expiresAtMs })
    if (this.entries.size > MAX_ENTRIES) this.entries.delete(this.entries.keys().next().value!)
  }
}
