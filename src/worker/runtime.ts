// Owns a worker's lifecycle: the claim loop, the concurrency slots, the periodic lease reaper
// and graceful stop. Each claimed job is a JobRun (job-run.ts), which owns its lease and outcome.
//
// Claiming polls, without LISTEN: docs/contract.md §10 keeps one LISTEN per process, owned by
// the event pipeline; a worker may also run where only a transaction-mode pooler (PgBouncer)
// reaches the database, which cannot carry LISTEN. Polling costs one indexed query
// (job_queue_claim_idx) per idle interval: after an empty claim the loop waits 100 ms, then
// 200, 400, … capped at 2000 ms, so an idle worker makes 0.5 queries a second and a new job
// waits 2 s at worst. A claim that returned jobs polls again at once while slots are free, so
// a backlog drains at full speed. wake() is the hook for a faster path: whoever already holds a
// NOTIFY stream (src/service.ts can pass the hub's "job queued" events) may call it to claim now.
//
// stop({ graceMs }): claim nothing more, wait up to graceMs for running handlers to finish and
// record their outcomes, then abort the rest (ctx.signal, cause 'worker-stopping') and release
// their jobs with jobwire_release: queued, due at once, the interrupted attempt not counted, and
// error {message: 'worker stopped', code: 'worker_stopped'} visible until the next attempt. A
// stop is the operator's doing, not the job's fault, so it must not use up max_attempts. A
// handler that ignores its signal keeps running in the background; its outcome is discarded.
import { hostname } from 'node:os'
import { randomBytes } from 'node:crypto'
import type pg from 'pg'
import { createDb, createPool, type Db } from '../db/pool.js'
import { JobRun, type JobHandler, type WorkerLogger } from './job-run.js'
import { startLeaseReaper, type LeaseReaper } from './lease-reaper.js'
import { claimJobs } from './sql.js'

export interface WorkerOptions {
  /** A pool to use (not ended by stop()), or a connection string for a pool the worker owns. */
  pool?: pg.Pool
  connectionString?: string
  /** statement_timeout of the worker's own pool (ms, 0: none — required through PgBouncer). Default 30000. */
  statementTimeoutMs?: number
  /** One handler per job type; only these types are claimed. */
  handlers: Record<string, JobHandler>
  /** Jobs run at once. Default 1. */
  concurrency?: number
  /** Lease length (whole seconds, 1–86400). Default 30. */
  leaseSeconds?: number
  /** Lease renewal interval. Default leaseSeconds / 3, so two renewals may fail in a row. */
  heartbeatIntervalMs?: number
  /** First idle poll delay, doubled after each empty claim up to maxPollIntervalMs. Default 100. */
  pollIntervalMs?: number
  /** Default 2000. */
  maxPollIntervalMs?: number
  /** How often to call jobwire_reap_expired_leases(); 0 never. Default 10000. */
  reapIntervalMs?: number
  /** Minimum time between two progress writes of one job. Default 250 (4 per second). */
  progressIntervalMs?: number
  /** Written to locked_by. Default `hostname:pid:random`; must be unique among live workers. */
  workerId?: string
  logger?: WorkerLogger
}

export interface Worker {
  readonly workerId: string
  /** Jobs whose handlers are running now. */
  readonly runningJobs: number
  /** Starts claiming. Throws if already started. */
  start(): void
  /** Claims now instead of waiting out the idle backoff (e.g. on a NOTIFY about a new job). */
  wake(): void
  /** Graceful stop (see the module header). Default graceMs 10000. Idempotent. */
  stop(options?: { graceMs?: number }): Promise<void>
}

const silentLogger: WorkerLogger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
}

export function createWorker(options: WorkerOptions): Worker {
  return new WorkerRuntime(options)
}

class WorkerRuntime implements Worker {
  readonly workerId: string
  private readonly db: Db
  private readonly ownsPool: boolean
  private readonly types: string[]
  private readonly concurrency: number
  private readonly leaseSeconds: number
  private readonly minPollMs: number
  private readonly maxPollMs: number
  private readonly reapIntervalMs: number
  private readonly log: WorkerLogger
  private readonly runs = new Map<string, JobRun>()
  private state: 'new' | 'running' | 'stopping' | 'stopped' = 'new'
  private loopDone: Promise<void> = Promise.resolve()
  private stopped: Promise<void> | undefined
  private reaper: LeaseReaper | undefined
  private interrupt: (() => void) | undefined
  private isWakeRequested = false

  constructor(private readonly options: WorkerOptions) {
    this.types = Object.keys(options.handlers)
    if (this.types.length === 0) throw new TypeError('createWorker: no handlers')
    this.concurrency = positiveInteger(options.concurrency ?? 1, 'concurrency')
    this.leaseSeconds = positiveInteger(options.leaseSeconds ?? 30, 'leaseSeconds')
    this.minPollMs = Math.max(1, options.pollIntervalMs ?? 100)
    this.maxPollMs = Math.max(this.minPollMs, options.maxPollIntervalMs ?? 2000)
    this.reapIntervalMs = Math.max(0, options.reapIntervalMs ?? 10_000)
    this.workerId =
      options.workerId ?? `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`
    this.log = options.logger ?? silentLogger

    if (options.pool) {
      this.db = createDb(options.pool)
      this.ownsPool = false
    } else if (options.connectionString) {
      // Per job: a heartbeat and a progress write may overlap; plus the claim and the reaper.
      const pool = createPool({
        connectionString: options.connectionString,
        max: this.concurrency * 2 + 2,
        statementTimeoutMs: options.statementTimeoutMs ?? 30_000,
        applicationName: 'jobwire-worker',
      })
      pool.on('error', (error) => this.log.warn({ err: error }, 'idle worker connection failed'))
      this.db = createDb(pool)
      this.ownsPool = true
    } else {
      throw new TypeError('createWorker: pass a pool or a connectionString')
    }
  }

  get runningJobs(): number {
    return this.runs.size
  }

  start(): void {
    if (this.state !== 'new') throw new Error(`worker ${this.workerId} was already started`)
    this.state = 'running'
    this.log.info(
      { workerId: this.workerId, types: this.types, concurrency: this.concurrency },
      'worker started',
    )
    if (this.reapIntervalMs > 0) {
      this.reaper = startLeaseReaper({
        db: this.db,
        intervalMs: this.reapIntervalMs,
        logger: this.log,
      })
    }
    this.loopDone = this.claimLoop()
  }

  wake(): void {
    this.isWakeRequested = true
    this.interrupt?.()
  }

  stop(options: { graceMs?: number } = {}): Promise<void> {
    this.stopped ??= this.shutdown(options.graceMs ?? 10_000)
    return this.stopped
  }

  private async shutdown(graceMs: number): Promise<void> {
    const wasRunning = this.state === 'running'
    this.state = 'stopping'
    const reaperStopped = this.reaper?.stop()
    this.interrupt?.()
    await this.loopDone
    if (wasRunning && this.runs.size > 0) {
      const runs = [...this.runs.values()]
      this.log.info({ jobs: runs.length, graceMs }, 'stopping: waiting for running jobs')
      const isFinished = await settlesWithin(Promise.all(runs.map((run) => run.done)), graceMs)
      if (!isFinished) {
        const left = [...this.runs.values()]
        this.log.warn({ jobs: left.map((run) => run.id) }, 'grace period over: releasing jobs')
        await Promise.all(left.map((run) => run.release('worker stopped')))
      }
    }
    await reaperStopped
    if (this.ownsPool) await this.db.destroy()
    this.state = 'stopped'
    this.log.info({ workerId: this.workerId }, 'worker stopped')
  }

  private async claimLoop(): Promise<void> {
    let idleMs = 0
    while (this.state === 'running') {
      const free = this.concurrency - this.runs.size
      if (free <= 0) {
        await this.pause() // a finishing job, wake() or stop() ends the pause
        continue
      }
      this.isWakeRequested = false
      const claimedAt = Date.now()
      let claimed: Awaited<ReturnType<typeof claimJobs>> = []
      try {
        claimed = await claimJobs(this.db, this.workerId, this.types, free, this.leaseSeconds)
      } catch (error) {
        this.log.warn({ err: error }, 'claim failed; retrying')
        idleMs = this.maxPollMs
      }
      for (const row of claimed) this.startRun(row, claimedAt)
      if (claimed.length > 0) {
        idleMs = 0
        continue
      }
      if (this.isWakeRequested) {
        idleMs = 0
        continue
      }
      idleMs = idleMs === 0 ? this.minPollMs : Math.min(idleMs * 2, this.maxPollMs)
      await this.pause(idleMs)
    }
  }

  private startRun(row: Awaited<ReturnType<typeof claimJobs>>[number], claimedAt: number): void {
    const handler = this.options.handlers[row.type]
    if (!handler) return // unreachable: only handled types are claimed
    const run = new JobRun(
      row,
      handler,
      {
        db: this.db,
        workerId: this.workerId,
        leaseSeconds: this.leaseSeconds,
        heartbeatIntervalMs:
          this.options.heartbeatIntervalMs ?? Math.max(50, (this.leaseSeconds * 1000) / 3),
        progressIntervalMs: this.options.progressIntervalMs ?? 250,
        logger: this.log,
      },
      claimedAt,
    )
    this.runs.set(run.id, run)
    void run.done.then(() => {
      this.runs.delete(run.id)
      this.interrupt?.() // a slot is free
    })
  }

  /** Waits for `ms` (or, without ms, until interrupted): interrupt() ends it early. */
  private pause(ms?: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = ms === undefined ? undefined : setTimeout(done, ms)
      function done() {
        if (timer) clearTimeout(timer)
        resolve()
      }
      this.interrupt = () => {
        this.interrupt = undefined
        done()
      }
    })
  }
}

function positiveInteger(value: number, name: string): number {
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(`createWorker: ${name} must be a whole number >= 1, got ${value}`)
  }
  return value
}

async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms)
  })
  try {
    return await Promise.race([promise.then(() => true), timeout])
  } finally {
    clearTimeout(timer)
  }
}
