// What a watch needs to talk to the server: options with their defaults, URLs, the token,
// and the one error type the client surfaces.
import { API_PREFIX, HEADER, QUERY } from '../protocol/http.js'
import type { BackoffOptions } from './backoff.js'

/**
 * Where a connection is. While `reconnecting`, `inMs` is the whole wait and `retryAt` the
 * moment (`Date.now()` clock) of the next attempt, for a countdown (describeState).
 */
export type ConnectionState =
  | 'connecting'
  | 'open'
  | { state: 'reconnecting'; inMs: number; retryAt: number }
  | 'polling'
  | 'closed'

/** A user token, or a function that returns a fresh one before each connection. */
export type TokenSource = string | (() => string | Promise<string>)

export interface ConnectionOptions {
  /** Where jobwire runs, e.g. `https://api.example.com`. Default: the page's origin. */
  baseUrl?: string
  /** A user JWT (`Authorization: Bearer`), or a function returning one (called per connection). */
  token?: TokenSource
  /** A share-link watch token from `POST /v1/jobs` (`watch_token`). */
  watchToken?: string
  /** Send the token as `?token=` instead of a header (avoids a CORS preflight). */
  tokenInQuery?: boolean
  /** Aborting it closes the watch for good. */
  signal?: AbortSignal
  backoff?: BackoffOptions
  /** Consecutive streaming failures before falling back to long-poll. Default 3. */
  fallbackAfterFailures?: number
  /** How long to long-poll before trying to stream again. Default 60000 ms. */
  retryStreamAfterMs?: number
  /** A stream that sends no byte this long after the request counts as failed. Default 10000 ms. */
  firstByteTimeoutMs?: number
  /** An open stream silent this long (3 missed heartbeats) is dropped and resumed. Default 45000 ms. */
  idleTimeoutMs?: number
  /** Long-poll `timeout` in seconds (the server allows up to 60 by default). Default 25. */
  longPollSeconds?: number
  /** Long-polls in flight at once while polling many jobs. Default 4. */
  maxParallelPolls?: number
  /** Called on every connection state change. */
  onState?(state: ConnectionState): void
  /** A fetch implementation; default the global one. */
  fetch?: typeof fetch
}

export type ResolvedOptions = Required<
  Omit<ConnectionOptions, 'token' | 'watchToken' | 'signal' | 'onState' | 'backoff'>
> &
  Pick<ConnectionOptions, 'token' | 'watchToken' | 'signal' | 'onState' | 'backoff'>

export function resolveOptions(options: ConnectionOptions): ResolvedOptions {
  const location = (globalThis as { location?: { origin?: string } }).location
  const baseUrl = (options.baseUrl ?? location?.origin ?? '').replace(/\/+$/, '')
  if (!/^https?:\/\//.test(baseUrl))
    throw new TypeError('jobwire client: pass baseUrl (e.g. "http://localhost:3000")')
  const fetchImpl = options.fetch ?? globalThis.fetch
  if (typeof fetchImpl !== 'function') throw new TypeError('jobwire client: no fetch available')
  return {
    ...options,
    baseUrl,
    tokenInQuery: options.tokenInQuery ?? false,
    fallbackAfterFailures: Math.max(1, options.fallbackAfterFailures ?? 3),
    retryStreamAfterMs: options.retryStreamAfterMs ?? 60_000,
    firstByteTimeoutMs: options.firstByteTimeoutMs ?? 10_000,
    idleTimeoutMs: options.idleTimeoutMs ?? 45_000,
    longPollSeconds: options.longPollSeconds ?? 25,
    maxParallelPolls: Math.max(1, options.maxParallelPolls ?? 4),
    fetch: (input, init) => fetchImpl(input, init),
  }
}

/** An HTTP answer or condition that ends a watch (or one job of a multiplexed watch). */
export class WatchError extends Error {
  constructor(
    message: string,
    /** The HTTP status, when the server answered one. */
    readonly status?: number,
  ) {
    super(message)
    this.name = 'WatchError'
  }
}

export interface Request {
  url: string
  headers: Record<string, string>
}

/** Builds an API request: `/v1` + path, the query, and the token as header or ?token=. */
export async function buildRequest(
  options: ResolvedOptions,
  path: string,
  query: Record<string, string | undefined> = {},
  headers: Record<string, string> = {},
): Promise<Request> {
  const token =
    typeof options.token === 'function'
      ? await options.token()
      : (options.token ?? options.watchToken)
  const params = new URLSearchParams()
  for (const [key, value] of Object.entries(query)) if (value !== undefined) params.set(key, value)
  const out: Record<string, string> = { ...headers }
  if (token !== undefined && options.tokenInQuery) params.set(QUERY.token, token)
  else if (token !== undefined) out.authorization = `Bearer ${token}`
  const search = params.toString()
  return {
    url: `${options.baseUrl}${API_PREFIX}${path}${search ? `?${search.replaceAll('%2C', ',')}` : ''}`,
    headers: out,
  }
}

/** The problem+json `detail` (or the status text) of a failed response. */
export async function describeFailure(res: Response): Promise<string> {
  try {
    const body = (await res.json()) as { detail?: unknown; title?: unknown }
    if (typeof body.detail === 'string') return body.detail
    if (typeof body.title === 'string') return body.title
  } catch {
    // not JSON
  }
  return `HTTP ${res.status}`
}

/** Statuses after which retrying cannot help (a token from a function may be refreshed). */
export function isFatalStatus(status: number, options: ResolvedOptions): boolean {
  if (status === 401) return typeof options.token !== 'function'
  return status === 400 || status === 403 || status === 404 || status === 410
}

/** Seconds from a Retry-After header, in ms (0 when absent or a date). */
export function retryAfterMs(res: Response): number {
  const value = res.headers.get(HEADER.retryAfter)
  return value && /^\d+$/.test(value) ? Number(value) * 1000 : 0
}

/**
 * The state as text: `open`, `reconnecting in 7 s` … The reconnect countdown is computed
 * from `retryAt` and `now`: call it again (say every 250 ms) while reconnecting to count down.
 */
export function describeState(state: ConnectionState, now = Date.now()): string {
  if (typeof state === 'string') return state
  const seconds = Math.ceil(Math.max(0, state.retryAt - now) / 1000)
  return seconds > 0 ? `reconnecting in ${seconds} s` : 'reconnecting now'
}
