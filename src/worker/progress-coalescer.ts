// Owns one job's progress writes. A handler may call ctx.progress() as often as it likes; the
// database sees at most one write per `minIntervalMs` (250 ms: 4 writes a second) and never
// two at once. The first value is written at once (a watcher sees the job move immediately),
// later ones are merged and written at the end of the interval. drain() writes whatever is
// still pending and accepts nothing after, so the last value is committed, as a version of its
// own, before the job's final write starts, and no late value can race that write. Nothing here
// relies on watchers merging versions: each write is one committed version of the row.
// Progress is rounded to 2 decimals, the precision the database keeps
// (migrations/1764000000006_values-users-see.sql): 11 / 40 * 100 is written as 27.5.

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

/** 2 decimals: what the database keeps of a progress value. */
export function roundProgress(progress: number): number {
  return Math.round(progress * 100) / 100
}

export class ProgressCoalescer {
  private pending: ProgressValue | undefined
  private inFlight: Promise<void> | undefined
  private timer: ReturnType<typeof setTimeout> | undefined
  private lastWriteAt = Number.NEGATIVE_INFINITY
  private isClosed = false
  /** drain() started: pending values are still written, new ones are not taken. */
  private isDraining = false
  private readonly now: () => number

  constructor(
    private readonly write: (value: ProgressValue) => Promise<unknown>,
    private readonly options: ProgressCoalescerOptions,
  ) {
    this.now = options.now ?? Date.now
  }

  /** Queues a value; a newer value replaces an unwritten older one (step and eta carry over). */
  push(value: ProgressValue): void {
    if (this.isClosed || this.isDraining) return
    const previous = this.pending
    this.pending = {
      progress: roundProgress(value.progress),
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

  /**
   * The handler is done: takes no more values and writes the pending one, ignoring the
   * interval. Resolves once it is written (or its write failed), before the final write.
   */
  drain(): Promise<void> {
    this.isDraining = true
    return this.flush()
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
