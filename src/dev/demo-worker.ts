// The demo worker: what `npm start` runs in development so that a new user sees jobs move.
//   demo       five named steps over ~10 s (payload.seconds: 0–120 to change it), progress and
//              ETA every 250 ms, then a small result;
//   demo-fail  two steps (~40 %), then a final (non-retryable) failure with code demo_failure.
// Both stop at once when the job is cancelled (ctx.signal).
import { setTimeout as delay } from 'node:timers/promises'
import type pg from 'pg'
import { createWorker, JobFailure, type JobContext, type JobHandler } from '../worker/index.js'
import type { WorkerLogger } from '../worker/index.js'

export const DEMO_STEPS = [
  'Preparing',
  'Fetching data',
  'Processing records',
  'Rendering report',
  'Finishing',
] as const

const DEFAULT_SECONDS = 10
const MAX_SECONDS = 120
/** Progress ticks per second: the worker coalesces to 4 writes a second anyway. */
const TICK_MS = 250

/** Moves through `steps` of DEMO_STEPS, each an equal share of the job's duration. */
async function walkSteps(ctx: JobContext, steps: number): Promise<number> {
  const totalMs = durationMs(ctx.job.payload)
  const stepMs = totalMs / DEMO_STEPS.length
  const startedAt = Date.now()
  for (let i = 0; i < steps; i++) {
    const step = DEMO_STEPS[i]!
    const stepEnd = (i + 1) * stepMs
    for (let elapsed = i * stepMs; ; elapsed = Math.min(stepEnd, elapsed + TICK_MS)) {
      const percent =
        totalMs === 0 ? ((i + 1) / DEMO_STEPS.length) * 100 : (elapsed / totalMs) * 100
      ctx.progress(Math.min(100, percent), step, Math.ceil((totalMs - elapsed) / 1000))
      if (elapsed >= stepEnd) break
      await delay(Math.min(TICK_MS, stepEnd - elapsed), undefined, { signal: ctx.signal })
    }
  }
  return Date.now() - startedAt
}

function durationMs(payload: unknown): number {
  const seconds =
    typeof payload === 'object' && payload !== null
      ? (payload as { seconds?: unknown }).seconds
      : undefined
  return typeof seconds === 'number' && Number.isFinite(seconds)
    ? Math.min(MAX_SECONDS, Math.max(0, seconds)) * 1000
    : DEFAULT_SECONDS * 1000
}

export const demoHandlers: Record<string, JobHandler> = {
  demo: async (ctx) => {
    const elapsedMs = await walkSteps(ctx, DEMO_STEPS.length)
    return { message: 'Demo job finished', steps: DEMO_STEPS.length, elapsed_ms: elapsedMs }
  },
  'demo-fail': async (ctx) => {
    await walkSteps(ctx, 2)
    throw new JobFailure('Demo failure: the simulated upstream service refused the request', {
      code: 'demo_failure',
      retryable: false,
    })
  },
}

export interface DemoWorkerOptions {
  pool?: pg.Pool
  connectionString?: string
  statementTimeoutMs?: number
  logger?: WorkerLogger
  /** Default 4: several demo jobs move side by side. */
  concurrency?: number
  leaseSeconds?: number
  reapIntervalMs?: number
}

export interface DemoWorker {
  workerId: string
  /** Claims now instead of after the idle backoff (≤ 2 s), e.g. when a job was just created. */
  wake(): void
  /** Finishes running demo jobs for up to graceMs (default 2000), then releases the rest. */
  stop(options?: { graceMs?: number }): Promise<void>
}

export function startDemoWorker(options: DemoWorkerOptions): DemoWorker {
  const worker = createWorker({
    pool: options.pool,
    connectionString: options.connectionString,
    statementTimeoutMs: options.statementTimeoutMs,
    handlers: demoHandlers,
    concurrency: options.concurrency ?? 4,
    leaseSeconds: options.leaseSeconds,
    reapIntervalMs: options.reapIntervalMs,
    logger: options.logger,
    workerId: `demo:${process.pid}:${Math.random().toString(36).slice(2, 8)}`,
  })
  worker.start()
  return {
    workerId: worker.workerId,
    wake: () => worker.wake(),
    stop: ({ graceMs = 2000 } = {}) => worker.stop({ graceMs }),
  }
}
