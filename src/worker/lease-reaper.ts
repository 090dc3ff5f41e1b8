// Owns the periodic call to jobwire_reap_expired_leases(): running jobs whose worker died (its
// lease ran out) go back to the queue or fail. Every worker runtime runs one, and the service
// may run one of its own, so jobs are rescued even when no TypeScript worker is up. Any number
// may run at once: the SQL skips rows another reaper holds. One call at a time per reaper.
import type { Db } from '../db/pool.js'
import type { WorkerLogger } from './job-run.js'
import { reapExpiredLeases } from './sql.js'

export interface LeaseReaper {
  /** Stops the timer and waits for a call in progress. */
  stop(): Promise<void>
}

/** Calls the reaper now and then every `intervalMs` (> 0). */
export function startLeaseReaper(options: {
  db: Db
  intervalMs: number
  logger: WorkerLogger
}): LeaseReaper {
  const { db, logger } = options
  if (!(options.intervalMs > 0)) {
    throw new RangeError(`startLeaseReaper: intervalMs must be > 0, got ${options.intervalMs}`)
  }
  let running: Promise<void> | undefined
  let isStopped = false
  const reap = () => {
    if (running || isStopped) return
    running = reapExpiredLeases(db)
      .then(
        (count) => {
          if (count > 0) logger.info({ count }, 'reaped jobs with expired leases')
        },
        (error: unknown) => logger.warn({ err: error }, 'lease reaper failed'),
      )
      .finally(() => {
        running = undefined
      })
  }
  reap()
  const timer = setInterval(reap, options.intervalMs)
  return {
    stop: async () => {
      isStopped = true
      clearInterval(timer)
      await running
    },
  }
}
