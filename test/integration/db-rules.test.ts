// The rules job_queue enforces whoever writes (docs/contract.md §2): a DB-side worker speaking
// plain SQL, with no HTTP and no SDK. Every statement here goes straight to PostgreSQL through pg.
import { randomUUID } from 'node:crypto'
import pg from 'pg'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'

interface JobNotification {
  id: string
  tenant_id: string
  owner_id: string | null
  version: number
  status: string
  ts: number
  /** The small fields, when the change can be built from them (see the migrations). */
  d: Record<string, unknown> | null
}

interface Row {
  id: string
  tenant_id: string
  type: string
  status: string
  progress: number
  eta_seconds: number | null
  error: { message: string; code?: string | null } | null
  version: string
  created_at: Date
  updated_at: Date
  started_at: Date | null
  completed_at: Date | null
  locked_by: string | null
  locked_until: Date | null
}

/** Notifications on `jobwire`, kept per job so that each test waits only for its own jobs. */
class NotificationInbox {
  private readonly queued = new Map<string, JobNotification[]>()
  private readonly waiting = new Map<string, (n: JobNotification) => void>()
  readonly raw: string[] = []

  constructor(client: pg.Client) {
    client.on('notification', (message) => {
      if (message.channel !== 'jobwire' || message.payload === undefined) return
      this.raw.push(message.payload)
      const parsed = JSON.parse(message.payload) as JobNotification
      const waiter = this.waiting.get(parsed.id)
      if (waiter) {
        this.waiting.delete(parsed.id)
        waiter(parsed)
        return
      }
      const list = this.queued.get(parsed.id) ?? []
      list.push(parsed)
      this.queued.set(parsed.id, list)
    })
  }

  /** The next notification for this job, in arrival order. */
  next(jobId: string, timeoutMs = 5000): Promise<JobNotification> {
    const first = this.queued.get(jobId)?.shift()
    if (first) return Promise.resolve(first)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(jobId)
        reject(new Error(`no notification for job ${jobId} within ${timeoutMs} ms`))
      }, timeoutMs)
      this.waiting.set(jobId, (n) => {
        clearTimeout(timer)
        resolve(n)
      })
    })
  }

  pending(jobId: string): JobNotification[] {
    return [...(this.queued.get(jobId) ?? [])]
  }
}

let database: TestDatabase
let pool: pg.Pool
let listener: pg.Client
let inbox: NotificationInbox

beforeAll(async () => {
  database = await createTestDatabase()
  pool = new pg.Pool({ connectionString: database.url, max: 4 })
  listener = new pg.Client({ connectionString: database.url })
  await listener.connect()
  inbox = new NotificationInbox(listener)
  await listener.query('LISTEN jobwire')
})
afterAll(async () => {
  await listener?.end()
  await pool?.end()
  await database?.drop()
})

async function insertJob(columns: Record<string, unknown> = {}): Promise<Row> {
  const values = { tenant_id: randomUUID(), owner_id: 'worker-test', type: 'db-rules', ...columns }
  const names = Object.keys(values)
  const { rows } = await pool.query<Row>(
    `INSERT INTO job_queue (${names.join(', ')}) VALUES (${names.map((_, i) => `$${i + 1}`).join(', ')}) RETURNING *`,
    Object.values(values),
  )
  return rows[0]!
}

async function update(id: string, set: string, params: unknown[] = []): Promise<Row> {
  const { rows } = await pool.query<Row>(`UPDATE job_queue SET ${set} WHERE id = $1 RETURNING *`, [
    id,
    ...params,
  ])
  if (!rows[0]) throw new Error(`job ${id} not found`)
  return rows[0]
}

async function sqlError(promise: Promise<unknown>): Promise<pg.DatabaseError> {
  try {
    await promise
  } catch (error) {
    if (error instanceof pg.DatabaseError) return error
    throw error
  }
  throw new Error('expected the statement to fail')
}

describe('version', () => {
  it('starts at 1 and goes up by exactly one per UPDATE, also for direct SQL', async () => {
    const job = await insertJob()
    expect(job.version).toBe('1')
    expect((await update(job.id, 'progress = 10')).version).toBe('2')
    expect((await update(job.id, "step = 'reading'")).version).toBe('3')
    expect((await update(job.id, "status = 'running', progress = 20")).version).toBe('4')
  })

  it('ignores a version supplied by the writer', async () => {
    const job = await insertJob({ version: 99 })
    expect(job.version).toBe('1')
    expect((await update(job.id, 'version = 500, progress = 1')).version).toBe('2')
    expect((await update(job.id, 'version = 500')).version).toBe('2')
  })
})

describe('timestamps', () => {
  it('sets created_at and updated_at on insert and ignores values the writer supplies', async () => {
    const before = await dbNow()
    const job = await insertJob({
      created_at: '2000-01-01T00:00:00Z',
      updated_at: '2000-01-01T00:00:00Z',
      started_at: '2000-01-01T00:00:00Z',
      completed_at: '2000-01-01T00:00:00Z',
    })
    expect(job.created_at.getTime()).toBeGreaterThanOrEqual(before.getTime())
    expect(job.updated_at.getTime()).toBe(job.created_at.getTime())
    expect(job.started_at).toBeNull()
    expect(job.completed_at).toBeNull()
  })

  it('moves updated_at on each change but never created_at, even when the writer sets it', async () => {
    const job = await insertJob()
    const changed = await update(
      job.id,
      "progress = 5, created_at = '2000-01-01', updated_at = '2000-01-01'",
    )
    expect(changed.created_at.getTime()).toBe(job.created_at.getTime())
    expect(changed.updated_at.getTime()).toBeGreaterThanOrEqual(job.updated_at.getTime())
    expect(await updatedAfterCreated(job.id)).toBe(true)
    const forged = await update(job.id, "created_at = '2000-01-01', completed_at = now()")
    expect(forged.created_at.getTime()).toBe(job.created_at.getTime())
    expect(forged.completed_at).toBeNull()
    expect(forged.version).toBe(changed.version)
  })

  it('sets started_at when the job first runs and keeps it across a retry', async () => {
    const job = await insertJob()
    const queued = await update(job.id, "started_at = now(), step = 'waiting'")
    expect(queued.started_at).toBeNull()
    const running = await update(job.id, "status = 'running'")
    expect(running.started_at).toBeInstanceOf(Date)
    expect(running.completed_at).toBeNull()
    await update(job.id, "status = 'queued'")
    const again = await update(job.id, "status = 'running'")
    expect(again.started_at?.getTime()).toBe(running.started_at?.getTime())
  })

  it.each(['completed', 'failed', 'cancelled'])(
    'sets completed_at when the job becomes %s',
    async (status) => {
      const job = await insertJob()
      const running = await update(job.id, "status = 'running'")
      expect(running.completed_at).toBeNull()
      const done = await update(
        job.id,
        status === 'failed'
          ? `status = $2, error = '{"message":"boom"}'`
          : 'status = $2, completed_at = NULL',
        [status],
      )
      expect(done.status).toBe(status)
      expect(done.completed_at).toBeInstanceOf(Date)
      expect(done.completed_at!.getTime()).toBeGreaterThanOrEqual(running.updated_at.getTime())
    },
  )
})

describe('terminal statuses', () => {
  it.each(['completed', 'failed', 'cancelled'])(
    'rejects any later change of a %s job with SQLSTATE JW001',
    async (status) => {
      const job = await insertJob()
      await update(
        job.id,
        status === 'failed' ? `status = $2, error = '{"message":"boom"}'` : 'status = $2',
        [status],
      )
      for (const set of ["status = 'running'", 'progress = 50', "status = 'queued'"]) {
        const error = await sqlError(update(job.id, set))
        expect(error.code).toBe('JW001')
        expect(error.message).toMatch(new RegExp(status))
      }
      const { rows } = await pool.query<Row>('SELECT * FROM job_queue WHERE id = $1', [job.id])
      expect(rows[0]).toMatchObject({ status, version: '2' })
    },
  )

  it('refuses a lease on a finished job but lets a lease be cleared', async () => {
    const job = await insertJob()
    await update(job.id, "status = 'completed'")
    const error = await sqlError(
      update(job.id, "locked_by = 'late-worker', locked_until = now() + interval '30 seconds'"),
    )
    expect(error.code).toBe('JW001')
    const cleared = await update(job.id, 'locked_by = NULL, locked_until = NULL')
    expect(cleared.version).toBe('2')
  })

  it('rejects moving a job to another tenant with SQLSTATE JW002', async () => {
    const job = await insertJob()
    const error = await sqlError(update(job.id, 'tenant_id = $2', [randomUUID()]))
    expect(error.code).toBe('JW002')
    const idError = await sqlError(update(job.id, 'id = $2', [randomUUID()]))
    expect(idError.code).toBe('JW002')
  })
})

describe('constraints', () => {
  it.each([
    ['progress = 101', 'job_queue_progress_check'],
    ['progress = -1', 'job_queue_progress_check'],
    ["status = 'bogus'", 'job_queue_status_check'],
  ])('rejects %s with a check violation (23514)', async (set, constraint) => {
    const job = await insertJob()
    const error = await sqlError(update(job.id, set))
    expect(error.code).toBe('23514')
    expect(error.constraint).toBe(constraint)
  })

  it('rejects an out-of-range progress or an unknown status on insert too', async () => {
    expect((await sqlError(insertJob({ progress: 100.5 }))).code).toBe('23514')
    expect((await sqlError(insertJob({ status: 'done' }))).code).toBe('23514')
  })

  it('accepts the boundaries 0 and 100 and fractional progress', async () => {
    const job = await insertJob()
    expect((await update(job.id, 'progress = 100')).progress).toBe(100)
    expect((await update(job.id, 'progress = 0')).progress).toBe(0)
    expect((await update(job.id, 'progress = 33.5')).progress).toBe(33.5)
  })
})

describe('values as users see them', () => {
  it('keeps progress to 2 decimals, on update and on insert', async () => {
    const job = await insertJob({ progress: 0.1 + 0.2 })
    expect(job.progress).toBe(0.3)
    // What a worker computing elapsed / total * 100 writes.
    expect((await update(job.id, 'progress = $2', [27.500000000000004])).progress).toBe(27.5)
    expect((await update(job.id, 'progress = $2', [57.49999999999999])).progress).toBe(57.5)
    expect((await update(job.id, 'progress = 100.0 / 3')).progress).toBe(33.33)
    expect((await update(job.id, 'progress = 0.005')).progress).toBe(0.01)
    expect((await update(job.id, 'progress = 99.999')).progress).toBe(100)
  })

  it('treats a progress change below 0.01 as no change: no version, no NOTIFY', async () => {
    const job = await insertJob()
    expect((await inbox.next(job.id)).version).toBe(1)
    const forty = await update(job.id, 'progress = 40')
    expect((await update(job.id, 'progress = 40.001')).version).toBe(forty.version)
    await update(job.id, 'progress = 41')
    expect((await inbox.next(job.id)).version).toBe(2)
    expect((await inbox.next(job.id)).version).toBe(3)
  })

  it('still rejects progress outside 0..100 that would round into it', async () => {
    const job = await insertJob()
    for (const value of [100.004, -0.001, Number.NaN, Number.POSITIVE_INFINITY]) {
      const error = await sqlError(update(job.id, 'progress = $2', [value]))
      expect(error).toMatchObject({ code: '23514', constraint: 'job_queue_progress_check' })
    }
  })

  it.each(['completed', 'failed', 'cancelled'])(
    'gives a %s job no time left: eta_seconds 0',
    async (status) => {
      const job = await insertJob()
      await update(job.id, "status = 'running', progress = 70, eta_seconds = 6")
      const done = await update(
        job.id,
        status === 'failed' ? `status = $2, error = '{"message":"boom"}'` : 'status = $2',
        [status],
      )
      expect(done).toMatchObject({ status, eta_seconds: 0 })
      const inserted = await insertJob({
        status,
        eta_seconds: 6,
        error: status === 'failed' ? JSON.stringify({ message: 'boom' }) : null,
      })
      expect(inserted.eta_seconds).toBe(0)
    },
  )

  it('clears the error of a failed attempt when the job completes, and keeps it otherwise', async () => {
    const retried = await insertJob({ attempts: 1 })
    const failure = '{"message":"upstream timed out","code":"timeout"}'
    // Waiting for its retry and running again: the error of the failed attempt stays.
    const waiting = await update(retried.id, `error = '${failure}'`)
    expect(waiting.error).toEqual({ message: 'upstream timed out', code: 'timeout' })
    expect((await update(retried.id, "status = 'running'")).error).toEqual(waiting.error)
    // Success: nothing of the failure outlives it.
    expect((await update(retried.id, "status = 'completed'")).error).toBeNull()
    expect((await insertJob({ status: 'completed', error: failure })).error).toBeNull()

    for (const status of ['failed', 'cancelled']) {
      const job = await insertJob({ error: failure })
      expect((await update(job.id, 'status = $2', [status])).error).toEqual(waiting.error)
    }
  })
})

describe('NOTIFY on channel jobwire', () => {
  it('sends a small payload: ids, version, status, ts and the small fields, never payload or result', async () => {
    // A payload far above NOTIFY's 8000-byte limit proves the job's payload is not sent.
    const big = { blob: 'x'.repeat(20_000) }
    const job = await insertJob({ payload: JSON.stringify(big), owner_id: 'alice' })
    const created = await inbox.next(job.id)
    expect(Object.keys(created).sort()).toEqual(
      ['d', 'id', 'owner_id', 'status', 'tenant_id', 'ts', 'version'].sort(),
    )
    // A new job's small fields, rendered as the service's reads render them.
    const row = (
      await pool.query(
        `SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS at
         FROM job_queue WHERE id = $1`,
        [job.id],
      )
    ).rows[0] as { at: string }
    expect(created.d).toEqual({
      type: job.type,
      progress: 0,
      step: null,
      eta_seconds: null,
      attempts: 0,
      max_attempts: 3,
      cancel_requested: false,
      created_at: row.at,
      updated_at: row.at,
      started_at: null,
      completed_at: null,
    })
    expect(created).toMatchObject({
      id: job.id,
      tenant_id: job.tenant_id,
      owner_id: 'alice',
      version: 1,
      status: 'queued',
    })
    expect(typeof created.ts).toBe('number')
    expect(Math.abs(created.ts - Date.now())).toBeLessThan(60_000)

    // A result (or an error) never travels: the notification says only that it changed.
    await update(job.id, "status = 'running', result = $2", [JSON.stringify(big)])
    const running = await inbox.next(job.id)
    expect(running).toMatchObject({ id: job.id, version: 2, status: 'running', d: null })
    await update(job.id, 'progress = 12.5, step = \'ünïcödé "quoted"\'')
    expect((await inbox.next(job.id)).d).toMatchObject({ progress: 12.5, step: 'ünïcödé "quoted"' })
    await update(job.id, "status = 'completed'")
    expect((await inbox.next(job.id)).d).toBeNull()
    expect(inbox.raw.every((p) => p.length < 1000)).toBe(true)
  })

  it('stays silent for a lease-only change and does not bump the version', async () => {
    const job = await insertJob()
    expect((await inbox.next(job.id)).version).toBe(1)

    const heartbeat = await update(
      job.id,
      "locked_by = 'worker-1', locked_until = now() + interval '30 seconds'",
    )
    expect(heartbeat.version).toBe('1')
    expect(heartbeat.locked_by).toBe('worker-1')
    expect(heartbeat.updated_at.getTime()).toBe(job.updated_at.getTime())
    await update(job.id, "locked_until = now() + interval '60 seconds'")

    // The first notification after the heartbeats is the visible change, with version 2.
    await update(job.id, 'progress = 10')
    const next = await inbox.next(job.id)
    expect(next).toMatchObject({ version: 2, status: 'queued' })
  })

  it('sends nothing for a rolled-back UPDATE', async () => {
    const job = await insertJob()
    expect((await inbox.next(job.id)).version).toBe(1)

    const client = await pool.connect()
    try {
      await client.query('BEGIN')
      await client.query("UPDATE job_queue SET status = 'running' WHERE id = $1", [job.id])
      await client.query('ROLLBACK')
    } finally {
      client.release()
    }

    await update(job.id, 'progress = 60')
    const next = await inbox.next(job.id)
    expect(next).toMatchObject({ version: 2, status: 'queued' })
  })

  it('sends exactly one notification per committed change, in commit order', async () => {
    const job = await insertJob()
    await update(job.id, 'progress = 10')
    await update(job.id, "status = 'running'")
    await update(job.id, 'progress = 90')
    await update(job.id, "status = 'completed', result = '{\"ok\":true}'")
    const versions: Array<[number, string]> = []
    for (let i = 0; i < 5; i++) {
      const n = await inbox.next(job.id)
      versions.push([n.version, n.status])
    }
    expect(versions).toEqual([
      [1, 'queued'],
      [2, 'queued'],
      [3, 'running'],
      [4, 'running'],
      [5, 'completed'],
    ])
    // Nothing else for this job: notifications arrive in commit order on one connection, so
    // once a later job's notification is here, anything extra for this job would be too.
    const marker = await insertJob()
    await inbox.next(marker.id)
    expect(inbox.pending(job.id)).toEqual([])
  })

  it('sends one notification per row for a multi-row UPDATE', async () => {
    const tenant = randomUUID()
    const a = await insertJob({ tenant_id: tenant })
    const b = await insertJob({ tenant_id: tenant })
    await inbox.next(a.id)
    await inbox.next(b.id)
    const { rowCount } = await pool.query(
      'UPDATE job_queue SET progress = 42 WHERE tenant_id = $1',
      [tenant],
    )
    expect(rowCount).toBe(2)
    expect(await inbox.next(a.id)).toMatchObject({ version: 2, tenant_id: tenant })
    expect(await inbox.next(b.id)).toMatchObject({ version: 2, tenant_id: tenant })
  })
})

/** Compared in the database: JS dates drop the microseconds. */
async function updatedAfterCreated(id: string): Promise<boolean> {
  const { rows } = await pool.query<{ moved: boolean }>(
    'SELECT updated_at > created_at AS moved FROM job_queue WHERE id = $1',
    [id],
  )
  return rows[0]!.moved
}

async function dbNow(): Promise<Date> {
  // The server's transaction clock, rounded down to the millisecond JS dates carry.
  const { rows } = await pool.query<{ now: Date }>(
    "SELECT date_trunc('milliseconds', now()) AS now",
  )
  return rows[0]!.now
}
