// Owns one claimed job from the claim to its one final write: the handler's context, the lease
// (a heartbeat every heartbeatIntervalMs, and a local deadline), coalesced progress, the abort
// signal, and the outcome. Promises:
//   * exactly one final write (complete, fail, cancelled or release), or none once the lease is
//     lost: a job we no longer hold belongs to someone else;
//   * pending progress is written, and committed, before complete and fail start; progress
//     reported after the handler settled is dropped (ProgressCoalescer.drain);
//   * ctx.signal aborts when cancel_requested is seen (heartbeat or progress answer), when the
//     lease is lost, or when the worker stops and the grace period ran out.
import type { Db } from '../db/pool.js'
import type { JobRow } from '../db/schema.js'
import { describeFailure, JobAbortedError, type AbortCause } from './failure.js'
import { ProgressCoalescer } from './progress-coalescer.js'
import {
  acknowledgeCancel,
  completeJob,
  failJob,
  heartbeatJob,
  isLeaseLost,
  releaseJob,
  reportProgress,
  type LeaseState,
} from './sql.js'

/** What a handler gets. */
export interface JobContext {
  job: {
    id: string
    type: string
    payload: unknown
    /** This attempt's number, from 1. */
    attempts: number
    maxAttempts: number
    tenantId: string
    ownerId: string | null
  }
  /** Aborted on cancel, lost lease or worker stop; `signal.reason` is a JobAbortedError. */
  signal: AbortSignal
  workerId: string
  /**
   * Reports progress (0–100), optionally the current step and the seconds remaining. Returns at
   * once; writes are coalesced to a few per second and the last value is always written.
   * Throws RangeError for an out-of-range value.
   */
  progress(progress: number, step?: string, etaSeconds?: number): void
}

/** Resolves with the job's result (any JSON value), or throws to fail the attempt. */
export type JobHandler = (ctx: JobContext) => Promise<unknown>

/** The subset of a pino logger the worker uses. */
export interface WorkerLogger {
  debug(obj: object, msg?: string): void
  info(obj: object, msg?: string): void
  warn(obj: object, msg?: string): void
  error(obj: object, msg?: string): void
}

export interface JobRunSettings {
  db: Db
  workerId: string
  leaseSeconds: number
  heartbeatIntervalMs: number
  progressIntervalMs: number
  logger: WorkerLogger
}

type Outcome = { ok: true; result: unknown } | { ok: false; error: unknown }

export class JobRun {
  readonly id: string
  /** Settles when the handler has settled and the final write is done. Never rejects. */
  readonly done: Promise<void>
  private readonly controller = new AbortController()
  private readonly coalescer: ProgressCoalescer
  private readonly log: WorkerLogger
  private heartbeatTimer: ReturnType<typeof setTimeout> | undefined
  private leaseTimer: ReturnType<typeof setTimeout> | undefined
  private isLeaseLost = false
  private isHeartbeating = true
  private finalWrite: Promise<void> | undefined

  /** `claimedAt`: local time just before the claim was sent, where the lease starts at the latest. */
  constructor(
    private readonly row: JobRow,
    handler: JobHandler,
    private readonly settings: JobRunSettings,
    claimedAt: number,
  ) {
    this.id = row.id
    this.log = settings.logger
    this.coalescer = new ProgressCoalescer(
      (value) => {
        // The lease is renewed from when the request was sent, at the latest.
        const sentAt = Date.now()
        return reportProgress(
          settings.db,
          row.id,
          settings.workerId,
          value,
          settings.leaseSeconds,
        ).then((state) => this.onLeaseAnswer(state, sentAt))
      },
      { minIntervalMs: settings.progressIntervalMs, onError: (error) => this.onWriteError(error) },
    )
    this.armLeaseDeadline(claimedAt)
    this.scheduleHeartbeat()
    this.done = this.execute(handler)
  }

  /**
   * Graceful stop ran out of time: abort the handler and give the job back (jobwire_release:
   * queued, due now, the attempt not counted). The handler's late outcome is ignored.
   */
  release(message: string): Promise<void> {
    this.abort('worker-stopping')
    return this.finish(async () => {
      this.coalescer.close()
      await releaseJob(this.settings.db, this.id, this.settings.workerId, message)
      this.log.info({ jobId: this.id }, 'released the job: the worker is stopping')
    })
  }

  private async execute(handler: JobHandler): Promise<void> {
    const outcome = await this.runHandler(handler)
    if (this.finalWrite) {
      // Released by stop(): the job is someone else's now.
      await this.finalWrite
      return
    }
    if (this.isLeaseLost) {
      this.stopLease()
      this.coalescer.close()
      this.log.warn({ jobId: this.id }, 'lease lost: the outcome of the handler is discarded')
      return
    }
    const { db, workerId } = this.settings
    const cause = this.abortCause()
    if (!outcome.ok && cause === 'cancel-requested') {
      await this.finish(async () => {
        this.coalescer.close()
        await acknowledgeCancel(db, this.id, workerId)
        this.log.info({ jobId: this.id }, 'job cancelled')
      })
      return
    }
    if (outcome.ok) {
      let resultJson: string | null
      try {
        resultJson = outcome.result === undefined ? null : JSON.stringify(outcome.result)
      } catch (error) {
        await this.failWith({
          message: `the handler's result is not JSON: ${describeFailure(error).message}`,
          code: 'result_not_json',
          retryable: false,
        })
        return
      }
      await this.finish(async () => {
        await this.coalescer.drain()
        await completeJob(db, this.id, workerId, resultJson)
        this.log.debug({ jobId: this.id }, 'job completed')
      })
      return
    }
    await this.failWith(describeFailure(outcome.error), outcome.error)
  }

  private failWith(failure: ReturnType<typeof describeFailure>, error?: unknown): Promise<void> {
    return this.finish(async () => {
      await this.coalescer.drain()
      await failJob(this.settings.db, this.id, this.settings.workerId, failure)
      this.log.warn(
        { jobId: this.id, type: this.row.type, attempt: this.row.attempts, err: error, failure },
        'job attempt failed',
      )
    })
  }

  private async runHandler(handler: JobHandler): Promise<Outcome> {
    const ctx: JobContext = {
      job: {
        id: this.row.id,
        type: this.row.type,
        payload: this.row.payload,
        attempts: Number(this.row.attempts),
        maxAttempts: Number(this.row.max_attempts),
        tenantId: this.row.tenant_id,
        ownerId: this.row.owner_id,
      },
      signal: this.controller.signal,
      workerId: this.settings.workerId,
      progress: (progress, step, etaSeconds) => this.progress(progress, step, etaSeconds),
    }
    try {
      // Through a promise, so a handler that throws synchronously fails the same way.
      return { ok: true, result: await Promise.resolve().then(() => handler(ctx)) }
    } catch (error) {
      return { ok: false, error }
    }
  }

  private progress(progress: number, step?: string, etaSeconds?: number): void {
    if (typeof progress !== 'number' || !(progress >= 0 && progress <= 100)) {
      throw new RangeError(`progress must be a number from 0 to 100, got ${String(progress)}`)
    }
    if (etaSeconds !== undefined && !(Number.isFinite(etaSeconds) && etaSeconds >= 0)) {
      throw new RangeError(`etaSeconds must be a number >= 0, got ${String(etaSeconds)}`)
    }
    this.coalescer.push({
      progress,
      step,
      etaSeconds: etaSeconds === undefined ? undefined : Math.round(etaSeconds),
    })
  }

  /** Runs the one final write; later calls get the first one's promise. Never rejects. */
  private finish(write: () => Promise<void>): Promise<void> {
    this.finalWrite ??= (async () => {
      this.stopLease()
      try {
        await write()
      } catch (error) {
        if (isLeaseLost(error)) {
          this.log.warn({ jobId: this.id, err: error }, 'lease lost before the final write')
        } else {
          // The lease runs out and the reaper re-queues the job: nothing is lost.
          this.log.error({ jobId: this.id, err: error }, 'could not record the outcome of a job')
        }
      } finally {
        this.coalescer.close()
      }
    })()
    return this.finalWrite
  }

  private scheduleHeartbeat(): void {
    this.heartbeatTimer = setTimeout(() => {
      const sentAt = Date.now()
      heartbeatJob(this.settings.db, this.id, this.settings.workerId, this.settings.leaseSeconds)
        .then(
          (state) => this.onLeaseAnswer(state, sentAt),
          (error: unknown) => this.onWriteError(error),
        )
        .finally(() => {
          if (this.isHeartbeating) this.scheduleHeartbeat()
        })
    }, this.settings.heartbeatIntervalMs)
  }

  private onLeaseAnswer(state: LeaseState, sentAt: number): void {
    if (!state.lease_held) {
      this.loseLease()
      return
    }
    this.armLeaseDeadline(sentAt)
    if (state.cancel_requested) this.abort('cancel-requested')
  }

  private onWriteError(error: unknown): void {
    if (isLeaseLost(error)) {
      this.loseLease()
      return
    }
    // A transient database error: the next heartbeat tries again; the local lease deadline
    // aborts the handler if none succeeds in time.
    this.log.warn({ jobId: this.id, err: error }, 'lease renewal or progress write failed')
  }

  /** The lease ends leaseSeconds after the request that renewed it was sent, at the latest. */
  private armLeaseDeadline(renewedAt: number): void {
    if (this.leaseTimer) clearTimeout(this.leaseTimer)
    if (!this.isHeartbeating) return
    const remainingMs = renewedAt + this.settings.leaseSeconds * 1000 - Date.now()
    this.leaseTimer = setTimeout(() => this.loseLease(), Math.max(0, remainingMs))
  }

  private loseLease(): void {
    if (this.isLeaseLost || this.finalWrite) return
    this.isLeaseLost = true
    this.stopLease()
    this.coalescer.close()
    this.abort('lease-lost')
  }

  private stopLease(): void {
    this.isHeartbeating = false
    if (this.heartbeatTimer) clearTimeout(this.heartbeatTimer)
    if (this.leaseTimer) clearTimeout(this.leaseTimer)
  }

  private abort(cause: AbortCause): void {
    if (!this.controller.signal.aborted) this.controller.abort(new JobAbortedError(cause))
  }

  private abortCause(): AbortCause | undefined {
    const reason: unknown = this.controller.signal.reason
    return reason instanceof JobAbortedError ? reason.abortCause : undefined
  }
}
