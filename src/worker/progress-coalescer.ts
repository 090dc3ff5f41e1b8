// Owns one job's progress writes. A handler may call ctx.progress() as often as it likes; the
// database sees at most one write per `minIntervalMs` (250 ms: 4 writes a second) and never
// two at once. The first value is written at once (a watcher sees the job move immediately),
// later ones are merged and written at the end of the interval, and flush() writes whatever is
// still pending, so the last value always reaches the row before the job completes.

export interface ProgressValue {
  progress: number
  /** undefined keeps the step of an earlier value (the SQL function keeps NULLs too). */
  step?: string
  etaSeconds?: number
}

export interface ProgressCoalescerOptions {
  /** Minimum time between the starts of two writes. */
  minIntervalMs: number
  /** A failed write is reported here and not retried: the next value supersedes it. */
  onError: (error: unknown) => void
  now?: () => number
}

export class ProgressCoalescer {
  private pending: ProgressValue | undefined
  private inFlight: Promise<void> | undefined
  private timer: ReturnType<typeof setTimeout> | undefined
  private lastWriteAt = Number.NEGATIVE_INFINITY
  private isClosed = false
  private readonly now: () => number

  constructor(
    private readonly write: (value: ProgressValue) => Promise<unknown>,
    private readonly options: ProgressCoalescerOptions,
  ) {
    this.now = options.now ?? Date.now
  }

  /** Queues a value; a newer value replaces an unwritten older one (step and eta carry over). */
  push(value: ProgressValue): void {
    if (this.isClosed) return
    const previous = this.pending
    this.pending = {
      progress: value.progress,
      step: value.step ?? previous?.step,
      etaSeconds: value.etaSeconds ?? previous?.etaSeconds,
    }
    this.schedule()
  }

  /** Writes what is pending now, ignoring the interval; resolves when nothing is left. */
  async flush(): Promise<void> {
    for (;;) {
      this.clearTimer()
      if (this.inFlight) {
        await this.inFlight
        continue
      }
      if (this.pending === undefined) return
      this.startWrite()
    }
  }

  /** Drops pending values and accepts no more (the lease was lost or the job is over). */
  close(): void {
    this.isClosed = true
    this.pending = undefined
    this.clearTimer()
  }

  private schedule(): void {
    if (this.timer || this.inFlight || this.pending === undefined || this.isClosed) return
    const waitMs = this.lastWriteAt + this.options.minIntervalMs - this.now()
    if (waitMs <= 0) {
      this.startWrite()
      return
    }
    this.timer = setTimeout(() => {
      this.timer = undefined
      this.schedule()
    }, waitMs)
  }

  private startWrite(): void {
    const value = this.pending
    if (value === undefined) return
    this.pending = undefined
    this.lastWriteAt = this.now()
    this.inFlight = this.write(value)
      .then(
        () => undefined,
        (error: unknown) => this.options.onError(error),
      )
      .finally(() => {
        this.inFlight = undefined
        this.schedule()
      })
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
  }
}
