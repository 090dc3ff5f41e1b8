// The SQL worker contract (migrations/1764000000001_worker-functions.sql) against a real
// PostgreSQL: claim, lease, progress, outcomes, the reaper, NOTIFY behaviour and the role.
// Each test uses its own job type, so the claims of one test never see another's jobs.
import { randomUUID } from 'node:crypto'
import pg from 'pg'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'

let database: TestDatabase
let pool: pg.Pool

beforeAll(async () => {
  database = await createTestDatabase()
  pool = new pg.Pool({ connectionString: database.url, max: 10 })
})
afterAll(async () => {
  await pool?.end()
  await database?.drop()
})

interface Row {
  id: string
  status: string
  attempts: number
  max_attempts: number
  locked_by: string | null
  locked_until: Date | null
  version: string
  progress: number
  step: string | null
  eta_seconds: number | null
  result: unknown
  error: { message: string; code: string | null } | null
  run_at: Date
  updated_at: Date
  cancel_requested: boolean
}

interface NewJobs {
  count?: number
  priority?: number
  /** SQL interval added to now(), e.g. '1 hour' or '-1 second'. */
  dueIn?: string
  maxAttempts?: number
}

const jobType = () => `t-${randomUUID().slice(0, 8)}`

async function insertJobs(type: string, options: NewJobs = {}): Promise<string[]> {
  const { rows } = await pool.query<{ id: string }>(
    `INSERT INTO job_queue (tenant_id, type, priority, run_at, max_attempts)
     SELECT $1, $2, $3, now() + $4::interval, $5 FROM generate_series(1, $6)
     RETURNING id`,
    [
      randomUUID(),
      type,
      options.priority ?? 0,
      options.dueIn ?? '0 seconds',
      options.maxAttempts ?? 3,
      options.count ?? 1,
    ],
  )
  return rows.map((r) => r.id)
}

async function insertJob(type: string, options: NewJobs = {}): Promise<string> {
  const [id] = await insertJobs(type, { ...options, count: 1 })
  return id!
}

async function claim(
  worker: string,
  types: string[],
  max = 1,
  leaseSeconds = 30,
  client: pg.Pool | pg.ClientBase = pool,
): Promise<Row[]> {
  const { rows } = await client.query<Row>('SELECT * FROM jobwire_claim($1, $2, $3, $4)', [
    worker,
    types,
    max,
    leaseSeconds,
  ])
  return rows
}

async function readJob(id: string): Promise<Row> {
  const { rows } = await pool.query<Row>('SELECT * FROM job_queue WHERE id = $1', [id])
  return rows[0]!
}

async function sqlError(
  promise: Promise<unknown>,
): Promise<{ code?: string; constraint?: string }> {
  try {
    await promise
  } catch (error) {
    return error as { code?: string; constraint?: string }
  }
  throw new Error('expected the statement to fail')
}

/** A LISTEN on the one channel; notifications arrive in commit order. */
async function listen() {
  const client = new pg.Client({ connectionString: database.url })
  await client.connect()
  const received: Array<{ id: string; version: number; status: string }> = []
  const waiters: Array<() => void> = []
  client.on('notification', (message) => {
    received.push(JSON.parse(message.payload ?? '{}') as (typeof received)[number])
    for (const wake of waiters.splice(0)) wake()
  })
  await client.query('LISTEN jobwire')
  return {
    received,
    async waitFor(predicate: (n: (typeof received)[number]) => boolean, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs
      while (!received.some(predicate)) {
        if (Date.now() > deadline) throw new Error('no matching notification in time')
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, deadline - Date.now())
          waiters.push(() => {
            clearTimeout(timer)
            resolve()
          })
        })
      }
    },
    close: () => client.end(),
  }
}

describe('jobwire_claim', () => {
  it('claims only jobs that are due', async () => {
    const type = jobType()
    await insertJob(type, { dueIn: '1 hour' })
    const due = await insertJob(type, { dueIn: '-1 second' })
    const claimed = await claim('w1', [type], 10)
    expect(claimed.map((j) => j.id)).toEqual([due])
  })

  it('claims only the requested types', async () => {
    const wanted = jobType()
    const other = jobType()
    const id = await insertJob(wanted)
    await insertJob(other)
    const claimed = await claim('w1', [wanted], 10)
    expect(claimed.map((j) => j.id)).toEqual([id])
    expect((await claim('w1', [jobType()], 10)).length).toBe(0)
  })

  it('takes higher priority first, then the earliest run_at', async () => {
    const type = jobType()
    const oldLow = await insertJob(type, { priority: 0, dueIn: '-2 minutes' })
    const newHigh = await insertJob(type, { priority: 5, dueIn: '-1 second' })
    const oldHigh = await insertJob(type, { priority: 5, dueIn: '-1 minute' })
    const first = await claim('w1', [type], 1)
    expect(first.map((j) => j.id)).toEqual([oldHigh])
    const rest = await claim('w1', [type], 5)
    expect(rest.map((j) => j.id)).toEqual([newHigh, oldLow])
  })

  it('marks the job running under a lease and counts the attempt', async () => {
    const type = jobType()
    const id = await insertJob(type)
    const [row] = await claim('worker-a', [type], 1, 45)
    expect(row).toMatchObject({ id, status: 'running', attempts: 1, locked_by: 'worker-a' })
    expect(row!.version).toBe('2')
    const { rows } = await pool.query<{ seconds: number }>(
      'SELECT extract(epoch FROM locked_until - updated_at)::int AS seconds FROM job_queue WHERE id = $1',
      [id],
    )
    expect(rows[0]!.seconds).toBe(45)
  })

  it('does not claim a queued job whose cancel was requested, and the reaper cancels it', async () => {
    const type = jobType()
    const id = await insertJob(type)
    await pool.query('UPDATE job_queue SET cancel_requested = true WHERE id = $1', [id])
    expect(await claim('w1', [type])).toEqual([])
    await pool.query('SELECT jobwire_reap_expired_leases()')
    expect((await readJob(id)).status).toBe('cancelled')
  })

  it('rejects invalid arguments with SQLSTATE 22023', async () => {
    expect((await sqlError(claim('', ['x']))).code).toBe('22023')
    expect((await sqlError(claim('w', ['x'], 0))).code).toBe('22023')
    expect((await sqlError(claim('w', ['x'], 1, 0))).code).toBe('22023')
  })

  it('gives each of 200 jobs to exactly one of 4 concurrent claimers (SKIP LOCKED)', async () => {
    const type = jobType()
    const ids = await insertJobs(type, { count: 200 })
    const claimer = async (name: string) => {
      const client = await pool.connect()
      const mine: string[] = []
      try {
        for (;;) {
          const rows = await claim(name, [type], 3, 30, client)
          if (rows.length === 0) {
            // Empty can mean "all locked by others right now": stop only when none are queued.
            const { rows: left } = await client.query(
              "SELECT 1 FROM job_queue WHERE type = $1 AND status = 'queued' LIMIT 1",
              [type],
            )
            if (left.length === 0) return mine
            continue
          }
          mine.push(...rows.map((r) => r.id))
        }
      } finally {
        client.release()
      }
    }
    const results = await Promise.all(['c1', 'c2', 'c3', 'c4'].map(claimer))
    const all = results.flat()
    expect(all.length).toBe(200)
    expect(new Set(all).size).toBe(200)
    expect(new Set(all)).toEqual(new Set(ids))
    // Every claimer got some: they really ran side by side.
    for (const mine of results) expect(mine.length).toBeGreaterThan(0)
    const { rows } = await pool.query<{ n: string }>(
      "SELECT count(*) AS n FROM job_queue WHERE type = $1 AND status = 'running' AND attempts = 1",
      [type],
    )
    expect(rows[0]!.n).toBe('200')
  })
})

describe('jobwire_heartbeat', () => {
  it('extends the lease without a new version and without a NOTIFY', async () => {
    const type = jobType()
    const id = await insertJob(type)
    const [claimed] = await claim('w1', [type], 1, 5)
    const listener = await listen()
    try {
      const { rows } = await pool.query('SELECT * FROM jobwire_heartbeat($1, $2, 600)', [id, 'w1'])
      expect(rows[0]).toEqual({ lease_held: true, cancel_requested: false })
      const after = await readJob(id)
      expect(after.version).toBe(claimed!.version)
      expect(after.locked_until!.getTime()).toBeGreaterThan(claimed!.locked_until!.getTime())

      // A visible change afterwards: notifications arrive in commit order, so once its
      // NOTIFY is here, one from the heartbeat would have arrived before it.
      await pool.query('SELECT jobwire_progress($1, $2, 10)', [id, 'w1'])
      await listener.waitFor((n) => n.id === id)
      expect(listener.received.filter((n) => n.id === id)).toEqual([
        expect.objectContaining({ id, version: Number(claimed!.version) + 1, status: 'running' }),
      ])
    } finally {
      await listener.close()
    }
  })

  it('answers lease_held = false to a worker that does not hold the job', async () => {
    const type = jobType()
    const id = await insertJob(type)
    await claim('w1', [type])
    const { rows } = await pool.query('SELECT * FROM jobwire_heartbeat($1, $2)', [id, 'w2'])
    expect(rows[0]).toEqual({ lease_held: false, cancel_requested: false })
    expect((await readJob(id)).locked_by).toBe('w1')
  })
})

describe('jobwire_progress', () => {
  it('writes progress, step and ETA as one new version and keeps NULL arguments unchanged', async () => {
    const type = jobType()
    const id = await insertJob(type)
    const [claimed] = await claim('w1', [type])
    const { rows } = await pool.query('SELECT * FROM jobwire_progress($1, $2, 40, $3, 12)', [
      id,
      'w1',
      'loading',
    ])
    expect(rows[0]).toEqual({ lease_held: true, cancel_requested: false })
    let row = await readJob(id)
    expect(row).toMatchObject({ progress: 40, step: 'loading', eta_seconds: 12 })
    expect(Number(row.version)).toBe(Number(claimed!.version) + 1)

    await pool.query('SELECT jobwire_progress($1, $2, 55)', [id, 'w1'])
    row = await readJob(id)
    expect(row).toMatchObject({ progress: 55, step: 'loading', eta_seconds: 12 })
    expect(Number(row.version)).toBe(Number(claimed!.version) + 2)

    // The same values again only renew the lease: no new version.
    await pool.query('SELECT jobwire_progress($1, $2, 55)', [id, 'w1'])
    expect((await readJob(id)).version).toBe(row.version)
  })

  it('rejects progress outside 0..100 with the table constraint', async () => {
    const type = jobType()
    const id = await insertJob(type)
    await claim('w1', [type])
    for (const value of [101, -1, Number.NaN]) {
      const error = await sqlError(
        pool.query('SELECT jobwire_progress($1, $2, $3)', [id, 'w1', value]),
      )
      expect(error).toMatchObject({ code: '23514', constraint: 'job_queue_progress_check' })
    }
    const error = await sqlError(
      pool.query('SELECT jobwire_progress($1, $2, 5, null, -3)', [id, 'w1']),
    )
    expect(error).toMatchObject({ code: '23514', constraint: 'job_queue_eta_check' })
    expect((await readJob(id)).progress).toBe(0)
  })

  it('raises JW003 for a worker that does not hold the job and JW004 for no job', async () => {
    const type = jobType()
    const id = await insertJob(type)
    expect(
      (await sqlError(pool.query('SELECT jobwire_progress($1, $2, 5)', [id, 'w1']))).code,
    ).toBe('JW003')
    await claim('w1', [type])
    expect(
      (await sqlError(pool.query('SELECT jobwire_progress($1, $2, 5)', [id, 'w2']))).code,
    ).toBe('JW003')
    expect(
      (await sqlError(pool.query('SELECT jobwire_progress($1, $2, 5)', [randomUUID(), 'w1']))).code,
    ).toBe('JW004')
  })
})

describe('outcomes', () => {
  it('completes a job with its result, progress 100 and no lease', async () => {
    const type = jobType()
    const id = await insertJob(type)
    await claim('w1', [type])
    await pool.query('SELECT jobwire_complete($1, $2, $3)', [id, 'w1', { rows: 3 }])
    const row = await readJob(id)
    expect(row).toMatchObject({
      status: 'completed',
      result: { rows: 3 },
      progress: 100,
      locked_by: null,
      locked_until: null,
    })
    // Finished: the lease is gone, so a second outcome is refused.
    expect((await sqlError(pool.query('SELECT jobwire_complete($1, $2)', [id, 'w1']))).code).toBe(
      'JW003',
    )
    // And a plain UPDATE meets the terminal guard.
    expect(
      (await sqlError(pool.query('UPDATE job_queue SET progress = 1 WHERE id = $1', [id]))).code,
    ).toBe('JW001')
  })

  it('re-queues a retryable failure with exponential backoff and keeps the error', async () => {
    const type = jobType()
    const id = await insertJob(type, { maxAttempts: 3 })
    await claim('w1', [type])
    await pool.query('SELECT jobwire_progress($1, $2, 30, $3)', [id, 'w1', 'halfway'])
    await pool.query('SELECT jobwire_fail($1, $2, $3, $4)', [id, 'w1', 'timeout', 'E_TIMEOUT'])
    const backoff = async () => {
      const { rows } = await pool.query<{ seconds: number }>(
        'SELECT extract(epoch FROM run_at - updated_at)::float8 AS seconds FROM job_queue WHERE id = $1',
        [id],
      )
      return rows[0]!.seconds
    }
    let row = await readJob(id)
    expect(row).toMatchObject({
      status: 'queued',
      attempts: 1,
      error: { message: 'timeout', code: 'E_TIMEOUT' },
      locked_by: null,
      locked_until: null,
      progress: 0,
      step: null,
    })
    expect(await backoff()).toBe(2) // 2^1 seconds
    expect(await claim('w1', [type])).toEqual([]) // not due yet

    // Make it due (a plain UPDATE, as an operator would), fail again: 2^2 seconds.
    await pool.query('UPDATE job_queue SET run_at = now() WHERE id = $1', [id])
    await claim('w1', [type])
    await pool.query('SELECT jobwire_fail($1, $2, $3)', [id, 'w1', 'timeout again'])
    row = await readJob(id)
    expect(row).toMatchObject({
      status: 'queued',
      attempts: 2,
      error: { message: 'timeout again', code: null },
    })
    expect(await backoff()).toBe(4)
  })

  it('takes an explicit retry delay instead of the formula', async () => {
    const type = jobType()
    const id = await insertJob(type)
    await claim('w1', [type])
    await pool.query('SELECT jobwire_fail($1, $2, $3, null, true, 0)', [id, 'w1', 'rate limited'])
    const [again] = await claim('w1', [type])
    expect(again).toMatchObject({ id, attempts: 2 })
  })

  it('fails the job for good after max_attempts, with the last error', async () => {
    const type = jobType()
    const id = await insertJob(type, { maxAttempts: 2 })
    await claim('w1', [type])
    await pool.query('SELECT jobwire_fail($1, $2, $3, null, true, 0)', [id, 'w1', 'first'])
    await claim('w1', [type])
    await pool.query('SELECT jobwire_progress($1, $2, 70)', [id, 'w1'])
    await pool.query('SELECT jobwire_fail($1, $2, $3, $4)', [id, 'w1', 'second', 'E2'])
    const row = await readJob(id)
    expect(row).toMatchObject({
      status: 'failed',
      attempts: 2,
      error: { message: 'second', code: 'E2' },
      progress: 70, // a final failure keeps how far it got
      locked_by: null,
    })
  })

  it('fails a non-retryable error at once', async () => {
    const type = jobType()
    const id = await insertJob(type, { maxAttempts: 5 })
    await claim('w1', [type])
    await pool.query('SELECT jobwire_fail($1, $2, $3, $4, false)', [
      id,
      'w1',
      'bad input',
      'E_INPUT',
    ])
    expect(await readJob(id)).toMatchObject({
      status: 'failed',
      attempts: 1,
      error: { message: 'bad input', code: 'E_INPUT' },
    })
  })

  it('releases a job on graceful stop without counting the attempt', async () => {
    const type = jobType()
    const id = await insertJob(type)
    await claim('w1', [type])
    await pool.query('SELECT jobwire_release($1, $2)', [id, 'w1'])
    expect(await readJob(id)).toMatchObject({
      status: 'queued',
      attempts: 0,
      error: { message: 'worker stopped', code: 'worker_stopped' },
      locked_by: null,
    })
    expect((await claim('w2', [type]))[0]).toMatchObject({ id, attempts: 1 })
  })
})

describe('cancel', () => {
  it('shows cancel_requested to the worker through heartbeat and progress, which then cancels', async () => {
    const type = jobType()
    const id = await insertJob(type)
    await claim('w1', [type])
    // What POST /v1/jobs/:id/cancel does for a running job.
    await pool.query('UPDATE job_queue SET cancel_requested = true WHERE id = $1', [id])
    const hb = await pool.query('SELECT * FROM jobwire_heartbeat($1, $2)', [id, 'w1'])
    expect(hb.rows[0]).toEqual({ lease_held: true, cancel_requested: true })
    const pr = await pool.query('SELECT * FROM jobwire_progress($1, $2, 20)', [id, 'w1'])
    expect(pr.rows[0]).toEqual({ lease_held: true, cancel_requested: true })
    await pool.query('SELECT jobwire_cancelled($1, $2)', [id, 'w1'])
    expect(await readJob(id)).toMatchObject({ status: 'cancelled', locked_by: null })
  })

  it('ends a retryable failure of a job whose cancel was requested as cancelled', async () => {
    const type = jobType()
    const id = await insertJob(type)
    await claim('w1', [type])
    await pool.query('UPDATE job_queue SET cancel_requested = true WHERE id = $1', [id])
    await pool.query('SELECT jobwire_fail($1, $2, $3)', [id, 'w1', 'interrupted'])
    expect((await readJob(id)).status).toBe('cancelled')
  })
})

describe('jobwire_reap_expired_leases', () => {
  it('re-queues a job whose lease expired, due at once, with error lease_expired', async () => {
    const type = jobType()
    const id = await insertJob(type)
    await claim('dead-worker', [type])
    // The lease runs out (lease columns only: bookkeeping, allowed by the trigger).
    await pool.query(
      "UPDATE job_queue SET locked_until = now() - interval '1 second' WHERE id = $1",
      [id],
    )
    const { rows } = await pool.query<{ n: number }>('SELECT jobwire_reap_expired_leases() AS n')
    expect(rows[0]!.n).toBeGreaterThanOrEqual(1)
    expect(await readJob(id)).toMatchObject({
      status: 'queued',
      attempts: 1,
      locked_by: null,
      error: { message: 'lease expired', code: 'lease_expired' },
    })
    // The dead worker's late writes are refused; another worker takes the job.
    const hb = await pool.query('SELECT * FROM jobwire_heartbeat($1, $2)', [id, 'dead-worker'])
    expect(hb.rows[0]).toMatchObject({ lease_held: false })
    expect(
      (await sqlError(pool.query('SELECT jobwire_complete($1, $2)', [id, 'dead-worker']))).code,
    ).toBe('JW003')
    expect((await claim('w2', [type]))[0]).toMatchObject({ id, attempts: 2 })
  })

  it('fails a job whose lease expired on its last attempt', async () => {
    const type = jobType()
    const id = await insertJob(type, { maxAttempts: 1 })
    await claim('dead-worker', [type])
    await pool.query(
      "UPDATE job_queue SET locked_until = now() - interval '1 second' WHERE id = $1",
      [id],
    )
    await pool.query('SELECT jobwire_reap_expired_leases()')
    expect(await readJob(id)).toMatchObject({
      status: 'failed',
      error: { message: 'lease expired', code: 'lease_expired' },
    })
  })

  it('leaves live leases alone', async () => {
    const type = jobType()
    const id = await insertJob(type)
    await claim('w1', [type], 1, 60)
    await pool.query('SELECT jobwire_reap_expired_leases()')
    expect(await readJob(id)).toMatchObject({ status: 'running', locked_by: 'w1' })
  })
})

describe('the jobwire_worker role', () => {
  it('is neither superuser nor BYPASSRLS nor a login, and RLS stays active for it', async () => {
    const { rows } = await pool.query(
      "SELECT rolsuper, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = 'jobwire_worker'",
    )
    expect(rows[0]).toEqual({ rolsuper: false, rolbypassrls: false, rolcanlogin: false })
    const client = await pool.connect()
    try {
      await client.query('BEGIN')
      await client.query('SET LOCAL ROLE jobwire_worker')
      const { rows: active } = await client.query<{ active: boolean }>(
        "SELECT row_security_active('job_queue') AS active",
      )
      expect(active[0]!.active).toBe(true)
    } finally {
      await client.query('ROLLBACK')
      client.release()
    }
  })

  it('can run the whole life of a job through the functions (SET ROLE in a transaction)', async () => {
    const type = jobType()
    const id = await insertJob(type)
    const client = await pool.connect()
    try {
      await client.query('BEGIN')
      await client.query('SET LOCAL ROLE jobwire_worker')
      const [row] = await claim('role-worker', [type], 1, 30, client)
      expect(row?.id).toBe(id)
      await client.query('SELECT * FROM jobwire_heartbeat($1, $2)', [id, 'role-worker'])
      await client.query('SELECT * FROM jobwire_progress($1, $2, 50, $3)', [id, 'role-worker', 'x'])
      await client.query('SELECT jobwire_complete($1, $2, $3)', [id, 'role-worker', '"ok"'])
      await client.query('SELECT jobwire_reap_expired_leases()')
      await client.query('COMMIT')
    } catch (error) {
      await client.query('ROLLBACK')
      throw error
    } finally {
      client.release()
    }
    expect(await readJob(id)).toMatchObject({ status: 'completed', result: 'ok' })
  })

  it('may not delete jobs, and the API role may not call the worker functions', async () => {
    const id = await insertJob(jobType())
    const client = await pool.connect()
    try {
      await client.query('BEGIN')
      await client.query('SET LOCAL ROLE jobwire_worker')
      expect((await sqlError(client.query('DELETE FROM job_queue WHERE id = $1', [id]))).code).toBe(
        '42501',
      )
      await client.query('ROLLBACK')
      await client.query('BEGIN')
      await client.query('SET LOCAL ROLE jobwire_app')
      expect((await sqlError(claim('app', ['x'], 1, 30, client))).code).toBe('42501')
    } finally {
      await client.query('ROLLBACK')
      client.release()
    }
  })

  it('works for a login created IN ROLE jobwire_worker, as docs/worker-contract.md says', async () => {
    // Roles are cluster-wide: a unique name, dropped at the end.
    const login = `jobwire_test_worker_${randomUUID().slice(0, 8)}`
    await pool.query(`CREATE ROLE ${login} LOGIN PASSWORD 'test-only' IN ROLE jobwire_worker`)
    const url = new URL(database.url)
    url.username = login
    url.password = 'test-only'
    const client = new pg.Client({
      connectionString: url.toString(),
      options: '-c role=jobwire_worker',
    })
    try {
      await client.connect()
      const { rows } = await client.query<{ current_user: string }>('SELECT current_user')
      expect(rows[0]!.current_user).toBe('jobwire_worker')
      const type = jobType()
      const id = await insertJob(type)
      const [row] = await claim('login-worker', [type], 1, 30, client)
      expect(row?.id).toBe(id)
      await client.query('UPDATE job_queue SET progress = 40 WHERE id = $1', [id])
      await client.query('SELECT jobwire_complete($1, $2)', [id, 'login-worker'])
      expect((await readJob(id)).status).toBe('completed')
    } finally {
      await client.end().catch(() => undefined)
      await pool.query(`DROP ROLE ${login}`)
    }
  })
})
