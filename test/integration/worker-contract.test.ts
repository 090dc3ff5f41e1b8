// docs/worker-contract.md checked against the database, from a worker's own login (a LOGIN
// role, member of jobwire_worker, whose sessions start as that role): the plain SQL of §9 run
// exactly as the page prints it (and as README.md repeats the claim), the grants §9 lists,
// every SQLSTATE of the §8 table, and what §5 says a reaped job looks like and what its old
// worker gets when it writes.
import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import pg from 'pg'
import { PROJECT_ROOT } from '../../src/project-root.js'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import { createWorkerLogin, type WorkerLogin } from '../helpers/worker-login.js'

const CONTRACT = readFileSync(join(PROJECT_ROOT, 'docs/worker-contract.md'), 'utf8')
const README = readFileSync(join(PROJECT_ROOT, 'README.md'), 'utf8')

/** The text of section `n` (`## n. …` up to the next `## `). */
function section(n: number): string {
  const start = CONTRACT.indexOf(`\n## ${n}. `)
  if (start < 0) throw new Error(`docs/worker-contract.md has no section ${n}`)
  const end = CONTRACT.indexOf('\n## ', start + 1)
  return CONTRACT.slice(start, end < 0 ? undefined : end)
}

/** The ```sql block after the marker `<!-- worker-contract.test.ts runs this block: name -->`. */
function sqlBlock(markdown: string, name: string): string {
  const marker = `<!-- worker-contract.test.ts runs this block: ${name} -->`
  const at = markdown.indexOf(marker)
  if (at < 0) throw new Error(`no block marked ${name}`)
  const match = /```sql\n([\s\S]*?)```/.exec(markdown.slice(at))
  if (!match) throw new Error(`no sql block after ${marker}`)
  return match[1]!
}

/** The backticked names in the §9 privilege table row of `privilege`. */
function grantedColumns(privilege: string): string[] {
  const row = section(9)
    .split('\n')
    .find((line) => line.startsWith(`| \`${privilege}\``))
  if (!row) throw new Error(`§9 lists no ${privilege} row`)
  const columns = row.split('|')[2]!
  return [...columns.matchAll(/`([a-z_]+)`/g)].map((m) => m[1]!).sort()
}

let database: TestDatabase
let login: WorkerLogin
/** The worker: connected as its own login. */
let worker: pg.Pool
/** The table owner (the service's login, a superuser here): sets up what a test needs. */
let owner: pg.Pool

beforeAll(async () => {
  database = await createTestDatabase()
  owner = new pg.Pool({ connectionString: database.url, max: 3 })
  login = await createWorkerLogin(database.url, { defaultRole: true })
  worker = new pg.Pool({ connectionString: login.url(database.url), max: 6 })
})
afterAll(async () => {
  await worker?.end()
  await owner?.end()
  await database?.drop()
  await login?.drop()
})

const jobType = () => `c-${randomUUID().slice(0, 8)}`

async function insertJobs(type: string, count = 1, maxAttempts = 3): Promise<string[]> {
  const { rows } = await owner.query<{ id: string }>(
    `INSERT INTO job_queue (tenant_id, owner_id, type, max_attempts)
     SELECT $1, 'user-1', $2, $3 FROM generate_series(1, $4) RETURNING id`,
    [randomUUID(), type, maxAttempts, count],
  )
  return rows.map((r) => r.id)
}

async function insertJob(type: string, maxAttempts = 3): Promise<string> {
  return (await insertJobs(type, 1, maxAttempts))[0]!
}

interface Row {
  id: string
  status: string
  progress: number
  step: string | null
  eta_seconds: number | null
  attempts: number
  error: { message: string; code: string | null } | null
  result: unknown
  locked_by: string | null
  locked_until: Date | null
  version: string
  due: boolean
}

async function readJob(id: string): Promise<Row> {
  const { rows } = await owner.query<Row>(
    'SELECT *, run_at <= now() AS due FROM job_queue WHERE id = $1',
    [id],
  )
  return rows[0]!
}

/** Claims one job of `type` through the function, as `workerId`, as the worker login. */
async function claim(type: string, workerId: string, leaseSeconds = 30): Promise<string> {
  const { rows } = await worker.query<{ id: string }>(
    'SELECT id FROM jobwire_claim($1, $2, 1, $3)',
    [workerId, [type], leaseSeconds],
  )
  expect(rows).toHaveLength(1)
  return rows[0]!.id
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

/** The lease runs out (the lease column alone: bookkeeping). */
async function expireLease(id: string): Promise<void> {
  await owner.query(
    "UPDATE job_queue SET locked_until = now() - interval '1 second' WHERE id = $1",
    [id],
  )
}

it('connects as jobwire_worker, the role its login starts as (§1)', async () => {
  const { rows } = await worker.query('SELECT current_user, session_user')
  expect(rows).toEqual([{ current_user: 'jobwire_worker', session_user: login.name }])
})

describe('§9: plain SQL, run as the page prints it', () => {
  const handClaim = sqlBlock(CONTRACT, 'hand-claim')

  it('prints the same hand-claim in README.md', () => {
    expect(sqlBlock(README, 'hand-claim')).toBe(handClaim)
  })

  it('hand-claims each of 40 jobs for exactly one of 4 concurrent workers, under a lease', async () => {
    const type = jobType()
    const ids = await insertJobs(type, 40)
    const claimer = async (name: string) => {
      const client = await worker.connect()
      const mine: string[] = []
      try {
        for (;;) {
          const { rows } = await client.query<{ id: string; attempts: number; type: string }>(
            handClaim,
            [name, [type], 45],
          )
          if (rows.length > 0) {
            expect(rows[0]).toMatchObject({ type, attempts: 1 })
            mine.push(rows[0]!.id)
            continue
          }
          // None returned can mean "all locked by others right now": stop when none is queued.
          const { rows: left } = await client.query(
            "SELECT 1 FROM job_queue WHERE type = $1 AND status = 'queued' LIMIT 1",
            [type],
          )
          if (left.length === 0) return mine
        }
      } finally {
        client.release()
      }
    }
    const results = await Promise.all(['h1', 'h2', 'h3', 'h4'].map(claimer))
    expect(results.flat().sort()).toEqual([...ids].sort())
    const { rows } = await owner.query<{ leased: boolean; n: number }>(
      `SELECT locked_until BETWEEN now() + interval '40 seconds' AND now() + interval '46 seconds'
                AS leased, count(*)::int AS n
         FROM job_queue WHERE type = $1 AND status = 'running' AND locked_by LIKE 'h_'
        GROUP BY 1`,
      [type],
    )
    expect(rows).toEqual([{ leased: true, n: 40 }])
  })

  it('writes heartbeat, progress and the outcome only while the lease is held', async () => {
    const type = jobType()
    const [done, failed] = await insertJobs(type, 2)
    const ran = async (block: string, id: string, workerId: string) =>
      worker.query(sqlBlock(CONTRACT, block), [id, workerId])
    const claimedIds: string[] = []
    for (let i = 0; i < 2; i++) {
      const { rows } = await worker.query<{ id: string }>(handClaim, ['me', [type], 30])
      claimedIds.push(...rows.map((r) => r.id))
    }
    expect(claimedIds.sort()).toEqual([done!, failed!].sort())
    const claimed = await readJob(done!)

    const beat = await ran('hand-heartbeat', done!, 'me')
    expect(beat.rows).toEqual([{ cancel_requested: false }])
    expect((await readJob(done!)).version).toBe(claimed.version) // bookkeeping

    const progress = await ran('hand-progress', done!, 'me')
    expect(progress.rows).toEqual([{ cancel_requested: false }])
    expect(await readJob(done!)).toMatchObject({ progress: 40, step: 'Uploading', eta_seconds: 12 })

    // Another worker id changes nothing: 0 rows, for every guarded write.
    for (const block of ['hand-heartbeat', 'hand-progress', 'hand-complete', 'hand-fail']) {
      expect((await ran(block, done!, 'someone-else')).rowCount).toBe(0)
    }

    expect((await ran('hand-complete', done!, 'me')).rowCount).toBe(1)
    expect(await readJob(done!)).toMatchObject({
      status: 'completed',
      progress: 100,
      result: { rows: 1200 },
      eta_seconds: 0,
      error: null,
      locked_by: null,
      locked_until: null,
    })
    expect((await ran('hand-fail', failed!, 'me')).rowCount).toBe(1)
    expect(await readJob(failed!)).toMatchObject({
      status: 'failed',
      error: { message: 'disk full', code: 'ENOSPC' },
      locked_by: null,
    })
    // Finished: the guard no longer matches.
    expect((await ran('hand-progress', done!, 'me')).rowCount).toBe(0)
  })

  it('never reaps a job set running without a lease, and reaps a hand-claimed one', async () => {
    const type = jobType()
    const [bare, leased] = await insertJobs(type, 2)
    await worker.query("UPDATE job_queue SET status = 'running' WHERE id = $1", [bare])
    await worker.query(handClaim, ['me', [type], 1])
    await expireLease(leased!)
    await worker.query('SELECT jobwire_reap_expired_leases()')
    expect(await readJob(bare!)).toMatchObject({ status: 'running', locked_until: null })
    expect(await readJob(leased!)).toMatchObject({
      status: 'queued',
      error: { message: 'lease expired', code: 'lease_expired' },
    })
  })

  it('grants jobwire_worker exactly the columns the page lists', async () => {
    const { rows } = await owner.query<{ privilege: string; columns: string[] }>(
      `SELECT privilege_type AS privilege, array_agg(column_name::text ORDER BY column_name) AS columns
         FROM information_schema.column_privileges
        WHERE grantee = 'jobwire_worker' AND table_name = 'job_queue'
          AND privilege_type IN ('INSERT', 'UPDATE')
        GROUP BY 1 ORDER BY 1`,
    )
    expect(rows).toEqual([
      { privilege: 'INSERT', columns: grantedColumns('INSERT') },
      { privilege: 'UPDATE', columns: grantedColumns('UPDATE') },
    ])
    const { rows: table } = await owner.query<{ privilege: string }>(
      `SELECT privilege_type AS privilege FROM information_schema.table_privileges
        WHERE grantee = 'jobwire_worker' AND table_name = 'job_queue'`,
    )
    expect(table).toEqual([{ privilege: 'SELECT' }]) // no DELETE, no TRUNCATE
  })
})

/** One check per SQLSTATE of the §8 table, each run as the worker login. */
const SQLSTATE_CASES: Record<string, () => Promise<void>> = {
  async JW001() {
    const type = jobType()
    const id = await insertJob(type)
    await claim(type, 'w1')
    await worker.query("SELECT jobwire_complete($1, 'w1')", [id])
    const change = await sqlError(
      worker.query('UPDATE job_queue SET progress = 5 WHERE id = $1', [id]),
    )
    expect(change.code).toBe('JW001')
    const lease = await sqlError(
      worker.query(
        "UPDATE job_queue SET locked_by = 'w1', locked_until = now() + interval '30 seconds' WHERE id = $1",
        [id],
      ),
    )
    expect(lease.code).toBe('JW001')
  },
  async JW002() {
    const id = await insertJob(jobType())
    // The table owner may update the columns, and meets the trigger…
    const moved = await sqlError(
      owner.query('UPDATE job_queue SET tenant_id = $2 WHERE id = $1', [id, randomUUID()]),
    )
    expect(moved.code).toBe('JW002')
    expect(
      (
        await sqlError(
          owner.query('UPDATE job_queue SET id = $2 WHERE id = $1', [id, randomUUID()]),
        )
      ).code,
    ).toBe('JW002')
    // …jobwire_worker may not, and is stopped before it: 42501.
    for (const column of ['tenant_id', 'id']) {
      const error = await sqlError(
        worker.query(`UPDATE job_queue SET ${column} = $2 WHERE id = $1`, [id, randomUUID()]),
      )
      expect(error.code).toBe('42501')
    }
  },
  async JW003() {
    const type = jobType()
    const id = await insertJob(type)
    await claim(type, 'w1')
    for (const call of [
      'SELECT * FROM jobwire_progress($1, $2, 10)',
      'SELECT jobwire_complete($1, $2)',
      "SELECT jobwire_fail($1, $2, 'x')",
      'SELECT jobwire_cancelled($1, $2)',
      'SELECT jobwire_release($1, $2)',
    ]) {
      const error = await sqlError(worker.query(call, [id, 'w2']))
      expect(error.code).toBe('JW003')
      expect(error.message).toBe(
        `job ${id} is not held by worker w2 (status running, locked by w1)`,
      )
    }
    expect(await readJob(id)).toMatchObject({ status: 'running', locked_by: 'w1', progress: 0 })
  },
  async JW004() {
    for (const call of [
      'SELECT * FROM jobwire_progress($1, $2, 10)',
      'SELECT jobwire_complete($1, $2)',
    ]) {
      expect((await sqlError(worker.query(call, [randomUUID(), 'w1']))).code).toBe('JW004')
    }
  },
  async '22023'() {
    const type = jobType()
    const id = await insertJob(type)
    const bad = [
      worker.query('SELECT * FROM jobwire_claim($1, $2)', ['', [type]]),
      worker.query('SELECT * FROM jobwire_claim($1, $2, 0)', ['w1', [type]]),
      worker.query('SELECT * FROM jobwire_claim($1, $2, 1, 86401)', ['w1', [type]]),
    ]
    for (const call of bad) expect((await sqlError(call)).code).toBe('22023')
    await claim(type, 'w1')
    expect((await sqlError(worker.query("SELECT jobwire_fail($1, 'w1', '')", [id]))).code).toBe(
      '22023',
    )
    expect(
      (await sqlError(worker.query("SELECT jobwire_fail($1, 'w1', 'x', null, true, -1)", [id])))
        .code,
    ).toBe('22023')
  },
  async '22P02'() {
    const type = jobType()
    const id = await insertJob(type)
    await claim(type, 'w1')
    expect(
      (await sqlError(worker.query("SELECT jobwire_complete($1, 'w1', $2)", [id, '{"rows": 12'])))
        .code,
    ).toBe('22P02')
    expect(
      (await sqlError(worker.query("SELECT * FROM jobwire_progress('5b0c…', 'w1', 10)"))).code,
    ).toBe('22P02')
    expect((await readJob(id)).status).toBe('running')
  },
  async '23514'() {
    const type = jobType()
    const id = await insertJob(type)
    await claim(type, 'w1')
    const violations: Array<[Promise<unknown>, string]> = [
      [
        worker.query("SELECT * FROM jobwire_progress($1, 'w1', 150)", [id]),
        'job_queue_progress_check',
      ],
      [
        worker.query("SELECT * FROM jobwire_progress($1, 'w1', 5, null, -1)", [id]),
        'job_queue_eta_check',
      ],
      [
        worker.query("UPDATE job_queue SET status = 'done' WHERE id = $1", [id]),
        'job_queue_status_check',
      ],
      [
        worker.query(`UPDATE job_queue SET error = '{"code": "E"}' WHERE id = $1`, [id]),
        'job_queue_error_check',
      ],
    ]
    for (const [call, constraint] of violations) {
      expect(await sqlError(call)).toMatchObject({ code: '23514', constraint })
    }
    expect(await readJob(id)).toMatchObject({ status: 'running', progress: 0, error: null })
  },
  async '42501'() {
    const type = jobType()
    const id = await insertJob(type)
    const denied = [
      'DELETE FROM job_queue WHERE id = $1',
      'UPDATE job_queue SET cancel_requested = true WHERE id = $1',
      `UPDATE job_queue SET payload = '{}' WHERE id = $1`,
      "UPDATE job_queue SET type = 'other' WHERE id = $1",
      'UPDATE job_queue SET priority = 9 WHERE id = $1',
    ]
    for (const text of denied) expect((await sqlError(worker.query(text, [id]))).code).toBe('42501')
    // §7: the table owner may ask for a cancel the way the API does.
    await owner.query('UPDATE job_queue SET cancel_requested = true WHERE id = $1', [id])
    // The API's role may not call the worker functions.
    const client = await owner.connect()
    try {
      await client.query('BEGIN')
      await client.query('SET LOCAL ROLE jobwire_app')
      const error = await sqlError(client.query("SELECT * FROM jobwire_claim('app', ARRAY['x'])"))
      expect(error.code).toBe('42501')
    } finally {
      await client.query('ROLLBACK')
      client.release()
    }
  },
  async '42883'() {
    const type = jobType()
    const id = await insertJob(type)
    await claim(type, 'w1')
    const heartbeat = (lease: string) =>
      worker.query(`SELECT * FROM jobwire_heartbeat($1, 'w1', ${lease})`, [id, 30])
    expect((await sqlError(heartbeat('$2::bigint'))).code).toBe('42883')
    // integer, smallint (what psycopg 3 sends for a small Python int), an untyped parameter,
    // and the documented cast work.
    for (const lease of ['$2::int', '$2::smallint', '$2', '$2::bigint::int']) {
      expect((await heartbeat(lease)).rows).toEqual([{ lease_held: true, cancel_requested: false }])
    }
  },
}

describe('§8: every SQLSTATE in the table, met from a jobwire_worker login', () => {
  const documented = [...section(8).matchAll(/^\| `([0-9A-Z]{5})`/gm)].map((m) => m[1]!)

  it('lists the SQLSTATEs checked here, no more and no fewer', () => {
    expect([...documented].sort()).toEqual(Object.keys(SQLSTATE_CASES).sort())
  })

  it.each(documented)('%s', async (code) => {
    await SQLSTATE_CASES[code]!()
  })
})

describe('§5: when the reaper takes a job', () => {
  it('queues it again with progress, step and ETA reset and the lost attempt counted', async () => {
    const type = jobType()
    const id = await insertJob(type)
    await claim(type, 'w1', 5)
    await worker.query("SELECT * FROM jobwire_progress($1, 'w1', 40, 'halfway', 12)", [id])
    await expireLease(id)
    await worker.query('SELECT jobwire_reap_expired_leases()')
    expect(await readJob(id)).toMatchObject({
      status: 'queued',
      due: true,
      progress: 0,
      step: null,
      eta_seconds: null,
      attempts: 1,
      error: { message: 'lease expired', code: 'lease_expired' },
      locked_by: null,
      locked_until: null,
    })
  })

  it('answers the old worker lease_held = false, JW003, or 0 rows, and lets an unguarded UPDATE through', async () => {
    const type = jobType()
    const id = await insertJob(type)
    await claim(type, 'w1', 5)
    await expireLease(id)
    await worker.query('SELECT jobwire_reap_expired_leases()')
    const reaped = await readJob(id)

    const beat = await worker.query("SELECT * FROM jobwire_heartbeat($1, 'w1')", [id])
    expect(beat.rows).toEqual([{ lease_held: false, cancel_requested: false }])
    for (const call of [
      "SELECT * FROM jobwire_progress($1, 'w1', 90)",
      "SELECT jobwire_complete($1, 'w1')",
      "SELECT jobwire_fail($1, 'w1', 'late')",
      "SELECT jobwire_cancelled($1, 'w1')",
      "SELECT jobwire_release($1, 'w1')",
    ]) {
      const error = await sqlError(worker.query(call, [id]))
      expect(error.code).toBe('JW003')
      expect(error.message).toBe(
        `job ${id} is not held by worker w1 (status queued, locked by nobody)`,
      )
    }
    expect((await worker.query(sqlBlock(CONTRACT, 'hand-progress'), [id, 'w1'])).rowCount).toBe(0)
    expect(await readJob(id)).toEqual(reaped)

    // Another worker takes it; the old one is told who holds it now.
    await claim(type, 'w2')
    const error = await sqlError(worker.query("SELECT jobwire_complete($1, 'w1')", [id]))
    expect(error.message).toBe(`job ${id} is not held by worker w1 (status running, locked by w2)`)
    // The danger §5 warns about: without the guard, the old worker overwrites w2's attempt.
    const unguarded = await worker.query('UPDATE job_queue SET progress = 99 WHERE id = $1', [id])
    expect(unguarded.rowCount).toBe(1)
    expect(await readJob(id)).toMatchObject({ status: 'running', locked_by: 'w2', progress: 99 })
  })

  it('fails it on its last attempt, keeping how far it got', async () => {
    const type = jobType()
    const id = await insertJob(type, 1)
    await claim(type, 'w1', 5)
    await worker.query("SELECT * FROM jobwire_progress($1, 'w1', 70, 'rendering', 5)", [id])
    await expireLease(id)
    await worker.query('SELECT jobwire_reap_expired_leases()')
    expect(await readJob(id)).toMatchObject({
      status: 'failed',
      progress: 70,
      step: 'rendering',
      eta_seconds: 0,
      attempts: 1,
      error: { message: 'lease expired', code: 'lease_expired' },
    })
  })

  it('cancels it when a cancel was requested', async () => {
    const type = jobType()
    const id = await insertJob(type)
    await claim(type, 'w1', 5)
    await owner.query('UPDATE job_queue SET cancel_requested = true WHERE id = $1', [id])
    await expireLease(id)
    await worker.query('SELECT jobwire_reap_expired_leases()')
    expect(await readJob(id)).toMatchObject({ status: 'cancelled', locked_by: null })
  })
})
