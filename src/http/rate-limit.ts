// Request rate limits: per user and per tenant for requests with a user token, per job for
// requests with a watch token (a share link counts against nothing else, so it cannot lock
// its owner or tenant out), per client IP for requests whose token failed (so guessing
// tokens is throttled too). One check per request, for the express routes, the edge and
// WebSocket upgrades alike: the counters are express-rate-limit stores (in-process memory
// by default: N instances allow N× the limit in total, docs/decisions.md), and the headers
// are the ones express-rate-limit writes (IETF draft 6: RateLimit-Policy, -Limit,
// -Remaining, -Reset) for the limit the client will hit first. Over a limit: 429
// problem+json with those headers and Retry-After.
import { ipKeyGenerator, MemoryStore, type Store } from 'express-rate-limit'
import type { Config } from '../config/index.js'
import type { Principal } from '../db/tenant-transaction.js'
import { TooManyRequestsError } from '../errors.js'
import { HEADER } from '../protocol/http.js'

export type RateLimitKind = 'user' | 'tenant' | 'watch' | 'ip'

export type HeaderPairs = Array<[name: string, value: string]>

export interface RateLimitOptions {
  config: Pick<
    Config,
    | 'RATE_LIMIT_WINDOW_MS'
    | 'RATE_LIMIT_PER_USER'
    | 'RATE_LIMIT_PER_TENANT'
    | 'RATE_LIMIT_PER_IP'
    | 'RATE_LIMIT_PER_WATCH_JOB'
  >
  /** The counters; in-process memory stores where none is given. */
  stores?: Partial<Record<RateLimitKind, Store>>
  onRejected?(kind: RateLimitKind): void
}

export interface RateLimits {
  /**
   * Counts one request by `principal`, or — when its token failed (undefined) — one from
   * `clientAddress`. Returns the RateLimit-* headers of the binding limit; throws
   * TooManyRequestsError, carrying them and Retry-After, over a limit.
   */
  admit(principal: Principal | undefined, clientAddress: string | undefined): Promise<HeaderPairs>
  /**
   * Work that costs what `requests` requests cost (a WebSocket subscribe; the jobs of a
   * `/v1/events?jobs=` stream beyond its own request, see subscriptionCost()): counted
   * against the caller's limits. Throws TooManyRequestsError.
   */
  charge(principal: Principal, requests: number): Promise<void>
}

const WHO: Record<RateLimitKind, string> = {
  ip: 'from your address',
  user: 'for your user',
  tenant: 'for your tenant',
  watch: 'for this job through watch tokens',
}

interface Count {
  kind: RateLimitKind
  limit: number
  hits: number
  resetTime: Date | undefined
}

export function createRateLimits(options: RateLimitOptions): RateLimits {
  const { config, onRejected } = options
  const windowMs = config.RATE_LIMIT_WINDOW_MS
  const windowSeconds = Math.ceil(windowMs / 1000)
  const limits: Record<RateLimitKind, number> = {
    ip: config.RATE_LIMIT_PER_IP,
    user: config.RATE_LIMIT_PER_USER,
    tenant: config.RATE_LIMIT_PER_TENANT,
    watch: config.RATE_LIMIT_PER_WATCH_JOB,
  }
  const stores = {} as Record<RateLimitKind, Store>
  for (const kind of ['ip', 'user', 'tenant', 'watch'] as const) {
    const store = options.stores?.[kind] ?? new MemoryStore()
    void store.init?.({ windowMs } as Parameters<NonNullable<Store['init']>>[0])
    stores[kind] = store
  }

  const resetSeconds = (count: Count) =>
    count.resetTime
      ? Math.max(0, Math.ceil((count.resetTime.getTime() - Date.now()) / 1000))
      : windowSeconds
  const headersOf = (count: Count): HeaderPairs => [
    [HEADER.rateLimitPolicy, `${count.limit};w=${windowSeconds}`],
    [HEADER.rateLimitLimit, String(count.limit)],
    [HEADER.rateLimitRemaining, String(Math.max(count.limit - count.hits, 0))],
    [HEADER.rateLimitReset, String(resetSeconds(count))],
  ]

  /** Counts `requests` hits on one bucket; undefined when that limit is off. */
  const hit = async (
    kind: RateLimitKind,
    key: string,
    requests = 1,
  ): Promise<Count | undefined> => {
    const limit = limits[kind]
    if (limit <= 0 || requests <= 0) return undefined
    let counted = await stores[kind].increment(key)
    for (let i = 1; i < requests; i++) counted = await stores[kind].increment(key)
    const count = { kind, limit, hits: counted.totalHits, resetTime: counted.resetTime }
    if (count.hits <= limit) return count
    onRejected?.(kind)
    const seconds = count.resetTime
      ? (count.resetTime.getTime() - Date.now()) / 1000
      : windowMs / 1000
    const error = new TooManyRequestsError(
      `Too many requests ${WHO[kind]} (limit ${limit} per ${windowMs / 1000} s); retry later.`,
      seconds,
    )
    for (const [name, value] of headersOf(count)) error.headers[name] = value
    throw error
  }

  /** The user's and the tenant's counts (or the job's, for a watch token), in that order. */
  const hitPrincipal = async (principal: Principal, requests = 1): Promise<Count[]> => {
    if (principal.jobId !== undefined) {
      const watch = await hit('watch', `w:${principal.jobId}`, requests)
      return watch ? [watch] : []
    }
    const user = await hit('user', `u:${principal.tenantId}:${principal.userId}`, requests)
    const tenant = await hit('tenant', `t:${principal.tenantId}`, requests)
    return [user, tenant].filter((c) => c !== undefined)
  }

  return {
    async admit(principal, clientAddress) {
      const counts = principal
        ? await hitPrincipal(principal)
        : [await hit('ip', ipKeyGenerator(clientAddress ?? 'unknown'))].filter(
            (c) => c !== undefined,
          )
      // The limit the client hits first: the fewest requests left (the tenant's on a tie).
      let binding: Count | undefined
      for (const count of counts)
        if (!binding || count.limit - count.hits <= binding.limit - binding.hits) binding = count
      return binding ? headersOf(binding) : []
    },
    async charge(principal, requests) {
      await hitPrincipal(principal, requests)
    },
  }
}
