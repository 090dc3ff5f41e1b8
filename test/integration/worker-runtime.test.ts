// The TypeScript worker runtime against a real PostgreSQL: exactly-once processing across
// instances, a dead worker's job taken over, retry, cancel, graceful stop, progress coalescing
// and crashing handlers. Jobs are watched through LISTEN jobwire (the same NOTIFY every client
// gets), so tests wait for events, not for time. Each test uses its own job type.
import { randomUUID } from 'node:crypto'
import { setTimeout as delay } from 'node:timers/promises'
import pg from 'pg'
import {
  createWorker,
  JobAbortedError,
  JobFailure,
  startLeaseReaper,
  type JobHandler,
  type Worker,
  type WorkerOptions,
} from '../../src/worker/index.js'
import { createDb } from '../../src/db/pool.js'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'

let database: TestDatabase
let pool: pg.Pool
let listener: Awaited<ReturnType<typeof listen>>
const workers: Worker[] = []

beforeAll(async () => {
  database = await createTestDatabase()
  pool = new pg.Pool({ connectionString: database.url, max: 6 })
  listener = await listen(database.url)
})
afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.stop({ graceMs: 0 })))
})
afterAll(async () => {
  await listener?.close()
  await pool?.end()
  await database?.drop()
})

interface Row {
  id: string
  status: string
  attempts: number
  version: string
  progress: number
  step: string | null
  result: unknown
  error: { message: string; code: string | null } | null
  locked_by: string | null
}

interface Notification {
  id: string
  version: number
  status: string
}

async function listen(url: string) {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  const received: Notification[] = []
  const waiters = new Set<() => void>()
  client.on('notification', (message) => {
    received.push(JSON.parse(message.payload ?? '{}') as Notification)
    for (const wake of waiters) wake()
  })
  await client.query('LISTEN jobwire')
  return {
    received,
    /** Resolves once `predicate` holds over everything received so far. */
    async until(predicate: (all: Notification[]) => boolean, timeoutMs = 15_000): Promise<void> {
      const deadline = Date.now() + timeoutMs
      while (!predicate(received)) {
        const left = deadline - Date.now()
        if (left <= 0) throw new Error('the expected notifications did not arrive in time')
        await new Promise<void>((resolve) => {
          const wake = () => {
            waiters.delete(wake)
            clearTimeout(timer)
            resolve()
          }
          const timer = setTimeout(wake, left)
          waiters.add(wake)
        })
      }
    },
    close: () => client.end(),
  }
}

/** Waits for the job's NOTIFY with this status. */
function reaches(id: string, status: string, timeoutMs?: number): Promise<void> {
  return listener.until((all) => all.some((n) => n.id === id && n.status === status), timeoutMs)
}

const jobType = () => `rt-${randomUUID().slice(0, 8)}`

async function insertJobs(type: string, count = 1, maxAttempts = 3): Promise<string[]> {
  const { rows } = await pool.query<{ id: string }>(
    `INSERT INTO job_queue (tenant_id, type, max_attempts, payload)
     SELECT $1, $2, $3, jsonb_build_object('n', i) FROM generate_series(1, $4) AS i
     RETURNING id`,
    [randomUUID(), type, maxAttempts, count],
  )
  return rows.map((r) => r.id)
}

async function insertJob(type: string, maxAttempts = 3): Promise<string> {
  return (await insertJobs(type, 1, maxAttempts))[0]!
}

async function readJob(id: string): Promise<Row> {
  const { rows } = await pool.query<Row>('SELECT * FROM job_queue WHERE id = $1', [id])
  return rows[0]!
}

/** Short timings: idle polls of 10–50 ms, a heartbeat every 50 ms, no reaper unless asked. */
function startWorker(options: Partial<WorkerOptions> & Pick<WorkerOptions, 'handlers'>): Worker {
  const worker = createWorker({
    connectionString: database.url,
    pollIntervalMs: 10,
    maxPollIntervalMs: 50,
    heartbeatIntervalMs: 50,
    leaseSeconds: 5,
    reapIntervalMs: 0,
    ...options,
  })
  workers.push(worker)
  worker.start()
  return worker
}

function deferred<T = void>() {
  let resolve!: (value: T) => void
  const promise = new Promise<T>((r) => {
    resolve = r
  })
  return { promise, resolve }
}

describe('the worker runtime', () => {
  it('processes 200 jobs exactly once with 4 instances of concurrency 2', async () => {
    const type = jobType()
    const ids = await insertJobs(type, 200)
    const calls = new Map<string, number>()
    const byWorker = new Map<string, number>()
    const handler: JobHandler = async (ctx) => {
      calls.set(ctx.job.id, (calls.get(ctx.job.id) ?? 0) + 1)
      byWorker.set(ctx.workerId, (byWorker.get(ctx.workerId) ?? 0) + 1)
      await delay(Math.random() * 4)
      return { n: (ctx.job.payload as { n: number }).n }
    }
    for (let i = 0; i < 4; i++) startWorker({ handlers: { [type]: handler }, concurrency: 2 })

    const wanted = new Set(ids)
    await listener.until(
      (all) =>
        new Set(all.filter((n) => wanted.has(n.id) && n.status === 'completed').map((n) => n.id))
          .size === 200,
      30_000,
    )
    expect(calls.size).toBe(200)
    expect([...calls.values()].every((count) => count === 1)).toBe(true)
    expect(byWorker.size).toBe(4) // all four took part
    const { rows } = await pool.query<{ status: string; attempts: number; n: string }>(
      'SELECT status, attempts, count(*) AS n FROM job_queue WHERE type = $1 GROUP BY 1, 2',
      [type],
    )
    expect(rows).toEqual([{ status: 'completed', attempts: 1, n: '200' }])
  })

  it("takes over a dead worker's job once its lease expires", async () => {
    const type = jobType()
    const id = await insertJob(type)
    // A worker claims with a 1 s lease and dies: it never renews.
    await pool.query('SELECT * FROM jobwire_claim($1, $2, 1, 1)', ['dead-worker', [type]])
    const seenBy: string[] = []
    startWorker({
      handlers: {
        [type]: async (ctx) => {
          seenBy.push(ctx.workerId)
          return 'rescued'
        },
      },
      reapIntervalMs: 100,
    })
    await reaches(id, 'completed')
    expect(await readJob(id)).toMatchObject({ status: 'completed', attempts: 2, result: 'rescued' })
    expect(listener.received.filter((n) => n.id === id).map((n) => n.status)).toEqual([
      'queued', // the insert
      'running', // the dead worker's claim
      'queued', // the reaper
      'running',
      'completed',
    ])
    expect(seenBy).toHaveLength(1)
  })

  it("re-queues a dead worker's job from a lease reaper alone (what the service runs)", async () => {
    const type = jobType()
    const id = await insertJob(type)
    await pool.query('SELECT * FROM jobwire_claim($1, $2, 1, 1)', ['dead-worker', [type]])
    const logged: object[] = []
    const noop = () => undefined
    const reaper = startLeaseReaper({
      db: createDb(pool), // not destroyed: the pool is the test's
      intervalMs: 100,
      logger: { debug: noop, info: (obj) => logged.push(obj), warn: noop, error: noop },
    })
    try {
      await listener.until((all) =>
        all.some((n) => n.id === id && n.status === 'queued' && n.version > 1),
      )
    } finally {
      await reaper.stop()
    }
    expect(await readJob(id)).toMatchObject({
      status: 'queued',
      attempts: 1,
      error: { message: 'lease expired', code: 'lease_expired' },
    })
    expect(logged).toContainEqual({ count: expect.any(Number) as number })
  })

  it('retries a failed attempt and then succeeds, leaving no error behind', async () => {
    const type = jobType()
    const id = await insertJob(type)
    startWorker({
      handlers: {
        [type]: async (ctx) => {
          if (ctx.job.attempts === 1) {
            throw new JobFailure('flaky upstream', { code: 'E_FLAKY', retryDelaySeconds: 0 })
          }
          return { attempt: ctx.job.attempts }
        },
      },
    })
    await reaches(id, 'completed')
    expect(await readJob(id)).toMatchObject({
      status: 'completed',
      attempts: 2,
      result: { attempt: 2 },
      error: null, // the failed attempt's error does not outlive the success
    })
    expect(listener.received.filter((n) => n.id === id).map((n) => n.status)).toEqual([
      'queued',
      'running',
      'queued',
      'running',
      'completed',
    ])
  })

  it('aborts ctx.signal when a running job is cancelled, and the job ends cancelled', async () => {
    const type = jobType()
    const id = await insertJob(type)
    const started = deferred()
    const aborted = deferred<unknown>()
    startWorker({
      handlers: {
        [type]: (ctx) =>
          new Promise((_resolve, reject) => {
            ctx.signal.addEventListener('abort', () => {
              aborted.resolve(ctx.signal.reason)
              reject(ctx.signal.reason as Error)
            })
            started.resolve()
          }),
      },
    })
    await started.promise
    // What POST /v1/jobs/:id/cancel does to a running job.
    await pool.query('UPDATE job_queue SET cancel_requested = true WHERE id = $1', [id])
    const reason = await aborted.promise
    expect(reason).toBeInstanceOf(JobAbortedError)
    expect((reason as JobAbortedError).abortCause).toBe('cancel-requested')
    await reaches(id, 'cancelled')
    expect(await readJob(id)).toMatchObject({ status: 'cancelled', locked_by: null })
  })

  it('finishes running jobs on a graceful stop and claims nothing more', async () => {
    const type = jobType()
    const first = await insertJob(type)
    const started = deferred()
    const gate = deferred()
    const worker = startWorker({
      handlers: {
        [type]: async () => {
          started.resolve()
          await gate.promise
          return 'finished'
        },
      },
    })
    await started.promise
    const stopped = worker.stop({ graceMs: 10_000 })
    const second = await insertJob(type)
    gate.resolve()
    await stopped
    expect(worker.runningJobs).toBe(0)
    expect(await readJob(first)).toMatchObject({ status: 'completed', result: 'finished' })
    expect(await readJob(second)).toMatchObject({ status: 'queued', attempts: 0 })
  })

  it('releases a job whose handler outlives the grace period, without counting the attempt', async () => {
    const type = jobType()
    const id = await insertJob(type)
    const started = deferred()
    const aborted = deferred<unknown>()
    const worker = startWorker({
      handlers: {
        // Ignores the signal and never settles: stop() must not wait for it.
        [type]: (ctx) => {
          ctx.signal.addEventListener('abort', () => aborted.resolve(ctx.signal.reason))
          started.resolve()
          return new Promise(() => undefined)
        },
      },
    })
    await started.promise
    await worker.stop({ graceMs: 100 })
    expect(((await aborted.promise) as JobAbortedError).abortCause).toBe('worker-stopping')
    expect(await readJob(id)).toMatchObject({
      status: 'queued',
      attempts: 0,
      locked_by: null,
      error: { message: 'worker stopped', code: 'worker_stopped' },
    })
  })

  it('coalesces 1,000 progress calls in a second into a handful of writes, the last one kept', async () => {
    const type = jobType()
    const id = await insertJob(type)
    let elapsedMs = 0
    startWorker({
      handlers: {
        [type]: async (ctx) => {
          const start = Date.now()
          for (let i = 1; i <= 1000; i++) {
            ctx.progress(i / 10, `step ${i}`, 1000 - i)
            if (i % 10 === 0) await delay(2) // spread over a few hundred milliseconds
          }
          elapsedMs = Date.now() - start
          return { calls: 1000 }
        },
      },
    })
    await reaches(id, 'completed')
    expect(elapsedMs).toBeLessThan(1000)
    const row = await readJob(id)
    // The last step only ever came with the last call: the final value reached the row.
    expect(row).toMatchObject({ status: 'completed', step: 'step 1000', progress: 100 })
    // insert 1, claim 2, then the progress writes (≤ 4 a second, plus the final flush), complete.
    const version = Number(row.version)
    const progressWrites = version - 3
    expect(progressWrites).toBeGreaterThanOrEqual(2)
    expect(progressWrites).toBeLessThanOrEqual(2 + Math.ceil(elapsedMs / 250))
    expect(listener.received.filter((n) => n.id === id)).toHaveLength(version) // one NOTIFY per version
  })

  it('commits the last progress as a version of its own before complete, and nothing after', async () => {
    // Every committed version of the row, as a watcher that misses none would see them: an
    // AFTER trigger on this file's database logs each one in the writer's transaction.
    await pool.query(`
      CREATE TABLE version_log (id uuid, version bigint, status text, progress float8, step text);
      CREATE FUNCTION log_version() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        INSERT INTO version_log VALUES (NEW.id, NEW.version, NEW.status, NEW.progress, NEW.step);
        RETURN NULL;
      END $$;
      CREATE TRIGGER log_version AFTER UPDATE ON job_queue FOR EACH ROW
        WHEN (NEW.version IS DISTINCT FROM OLD.version) EXECUTE FUNCTION log_version();`)
    try {
      const type = jobType()
      const id = await insertJob(type)
      const reported: Array<[number, string]> = []
      startWorker({
        handlers: {
          [type]: async (ctx) => {
            for (let i = 1; i <= 10; i++) {
              const value: [number, string] = [(i / 40) * 100, `step ${i}`]
              reported.push([Math.round(value[0] * 100) / 100, value[1]])
              ctx.progress(...value)
              await delay(1) // 10 values 1 ms apart: merged into a few writes
            }
            // The last value comes just before the handler returns; 27.500000000000004 as
            // computed, 27.5 as written.
            ctx.progress((11 / 40) * 100, 'step 11')
            reported.push([27.5, 'step 11'])
            // A stray callback reporting after the handler returned is never written.
            setTimeout(() => ctx.progress(99, 'too late'), 0)
            return 'done'
          },
        },
      })
      await reaches(id, 'completed')
      const { rows } = await pool.query<{
        version: string
        status: string
        progress: number
        step: string | null
      }>('SELECT version, status, progress, step FROM version_log WHERE id = $1 ORDER BY version', [
        id,
      ])
      // Consecutive versions: claim (2), the progress writes, complete.
      expect(rows.map((r) => Number(r.version))).toEqual(rows.map((_, i) => i + 2))
      expect(rows[0]).toMatchObject({ status: 'running', progress: 0 })
      expect(rows.at(-1)).toMatchObject({ status: 'completed', progress: 100, step: 'step 11' })
      const writes = rows.slice(1, -1)
      expect(writes.at(-1)).toEqual({
        version: String(Number(rows.at(-1)!.version) - 1),
        status: 'running',
        progress: 27.5,
        step: 'step 11',
      })
      // Each write is a value the handler reported, in the order reported.
      const order = writes.map((w) =>
        reported.findIndex(([progress, step]) => progress === w.progress && step === w.step),
      )
      expect(order.every((index) => index >= 0)).toBe(true)
      expect([...order].sort((a, b) => a - b)).toEqual(order)
      expect(rows.some((r) => r.step === 'too late')).toBe(false)
    } finally {
      await pool.query('DROP TABLE version_log; DROP FUNCTION log_version() CASCADE')
    }
  })

  it('writes the last progress before a failure', async () => {
    const type = jobType()
    const id = await insertJob(type)
    startWorker({
      handlers: {
        [type]: async (ctx) => {
          for (let i = 0; i < 500; i++) ctx.progress(i / 10)
          ctx.progress(42.5, 'last words')
          throw new JobFailure('gave up', { code: 'E_GIVE_UP', retryable: false })
        },
      },
    })
    await reaches(id, 'failed')
    expect(await readJob(id)).toMatchObject({
      status: 'failed',
      progress: 42.5,
      step: 'last words',
      error: { message: 'gave up', code: 'E_GIVE_UP' },
    })
  })

  it('fails the attempt of a crashed handler with its message, also for a synchronous throw', async () => {
    const asyncType = jobType()
    const syncType = jobType()
    const asyncId = await insertJob(asyncType, 1)
    const syncId = await insertJob(syncType, 1)
    startWorker({
      concurrency: 2,
      handlers: {
        [asyncType]: async () => {
          await delay(1)
          throw Object.assign(new Error('boom: disk full'), { code: 'ENOSPC' })
        },
        [syncType]: () => {
          throw new TypeError("Cannot read properties of undefined (reading 'rows')")
        },
      },
    })
    await Promise.all([reaches(asyncId, 'failed'), reaches(syncId, 'failed')])
    expect(await readJob(asyncId)).toMatchObject({
      status: 'failed',
      attempts: 1,
      error: { message: 'boom: disk full', code: 'ENOSPC' },
    })
    expect(await readJob(syncId)).toMatchObject({
      status: 'failed',
      error: { message: "Cannot read properties of undefined (reading 'rows')", code: null },
    })
  })

  it('rejects an out-of-range progress value in the handler, before any write', async () => {
    const type = jobType()
    const id = await insertJob(type, 1)
    startWorker({
      handlers: {
        [type]: async (ctx) => {
          ctx.progress(150)
          return 'unreachable'
        },
      },
    })
    await reaches(id, 'failed')
    const row = await readJob(id)
    expect(row.error?.message).toMatch(/progress must be a number from 0 to 100/)
    expect(row.version).toBe('3') // claim, fail: no progress write
  })
})
