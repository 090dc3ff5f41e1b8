// When an event source (the LISTEN connection, or the replication stream) tries again after
// its connection failed: at once the first time, then after full-jitter exponential backoff,
// delays (ms) drawn from [0, min(max, min·2^attempt)] — e.g. 100, then up to 200, 400, …
// capped at LISTENER_RECONNECT_MAX_MS (2000 by default) — for as long as it takes.
// retryNow() cuts a wait short when something else has just seen the database answer (the
// query pool connected, a readiness check passed): at most one early attempt a second,
// whatever calls it.

/** Early attempts (retryNow) start at most this often. */
const EARLY_RETRY_INTERVAL_MS = 1000

/**
 * The wait before reconnect attempt `attempt` (0 for the first after a failure): the
 * minimum, then full jitter over min·2^attempt, capped at maxMs.
 */
export function reconnectDelayMs(
  attempt: number,
  minMs: number,
  maxMs: number,
  random: () => number = Math.random,
): number {
  if (attempt === 0) return minMs
  return Math.round(random() * Math.min(maxMs, minMs * 2 ** Math.min(attempt, 30)))
}

export class ReconnectSchedule {
  private attempt = 0
  private timer: NodeJS.Timeout | undefined
  private lastAttemptAt = 0

  constructor(private readonly options: { minMs: number; maxMs: number; connect: () => void }) {}

  /** Failed attempts since the last success. */
  get failures(): number {
    return this.attempt
  }

  /** An attempt starts now. */
  started(): void {
    this.timer = undefined
    this.lastAttemptAt = Date.now()
  }

  succeeded(): void {
    this.attempt = 0
  }

  /** The attempt or the connection failed: schedules the next one; returns its delay. */
  failed(): number {
    const delay = reconnectDelayMs(this.attempt, this.options.minMs, this.options.maxMs)
    this.attempt = Math.min(this.attempt + 1, 30)
    this.timer = setTimeout(this.options.connect, delay)
    return delay
  }

  /** Starts the waiting attempt now (nothing while connected or connecting). */
  retryNow(): void {
    if (this.timer === undefined) return
    if (Date.now() - this.lastAttemptAt < EARLY_RETRY_INTERVAL_MS) return
    clearTimeout(this.timer)
    this.timer = undefined
    this.options.connect()
  }

  stop(): void {
    clearTimeout(this.timer)
    this.timer = undefined
  }
}
