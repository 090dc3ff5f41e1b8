// Reconnect delays: exponential backoff with full jitter (AWS Architecture Blog, "Exponential
// Backoff And Jitter"). After the n-th consecutive failure (n = 0, 1, 2, …) the delay is a
// uniform random number in [0, min(capMs, baseMs · 2^n)]. With the defaults the ceilings are
// 1000, 2000, 4000, 8000, 10000, 10000 … ms: once a server is back, a client is back within
// 10 s (5 s on average), or at once with retryNow(); and 10,000 clients of a restarted server
// return spread over those 10 s (about 1,000 connections a second), not all at once.
// A connection that stayed healthy for resetAfterMs counts as a success: the next failure
// starts again from baseMs. (docs/client.md, "Backoff"; docs/decisions.md, "The client".)

export interface BackoffOptions {
  /** Ceiling of the first delay. Default 1000 ms. */
  baseMs?: number
  /** Largest ceiling. Default 10000 ms. */
  capMs?: number
  /** A connection open at least this long resets the backoff. Default 10000 ms. */
  resetAfterMs?: number
}

export const DEFAULT_BACKOFF: Required<BackoffOptions> = {
  baseMs: 1000,
  capMs: 10_000,
  resetAfterMs: 10_000,
}

export class Backoff {
  readonly baseMs: number
  readonly capMs: number
  readonly resetAfterMs: number
  /** Consecutive failures since the last healthy period. */
  attempts = 0
  private openedAt: number | undefined

  constructor(
    options: BackoffOptions = {},
    private readonly random: () => number = Math.random,
  ) {
    this.baseMs = Math.max(0, options.baseMs ?? DEFAULT_BACKOFF.baseMs)
    this.capMs = Math.max(this.baseMs, options.capMs ?? DEFAULT_BACKOFF.capMs)
    this.resetAfterMs = Math.max(0, options.resetAfterMs ?? DEFAULT_BACKOFF.resetAfterMs)
  }

  /** The upper bound of the next delay. */
  ceilingMs(): number {
    // 2^attempts overflows to Infinity long after it passed any cap; min() handles that.
    return Math.min(this.capMs, this.baseMs * 2 ** this.attempts)
  }

  /** The connection is open and delivering: start the healthy period. */
  opened(): void {
    this.openedAt ??= Date.now()
  }

  /** The connection failed or closed: the delay before the next attempt. */
  nextDelayMs(): number {
    if (this.openedAt !== undefined && Date.now() - this.openedAt >= this.resetAfterMs)
      this.attempts = 0
    this.openedAt = undefined
    const delay = Math.floor(this.random() * (this.ceilingMs() + 1))
    this.attempts++
    return Math.min(delay, this.capMs)
  }

  reset(): void {
    this.attempts = 0
    this.openedAt = undefined
  }
}

/** Resolves after `ms`, or at once when the signal aborts (it never rejects). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve()
    const done = () => {
      clearTimeout(timer)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    signal?.addEventListener('abort', done, { once: true })
  })
}
