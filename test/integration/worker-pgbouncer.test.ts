// Workers behind PgBouncer in transaction mode, as docs/worker-contract.md §1 tells them to
// connect: each statement may run on another server connection, so session state does not
// stick. Shown here: `options=-c role=…` is refused by PgBouncer; a session `SET ROLE` does not
// stay with the client and leaks to the next client of that server connection; what works is a
// login whose default role is jobwire_worker (ALTER ROLE … SET role), a login that relies on
// its membership alone, or `SET LOCAL ROLE` inside each transaction. The TypeScript runtime
// and the Python example worker run through the pooler that way.
//
// The pooler logs in to PostgreSQL as each client's own user (no `user=` in [databases]), so
// the login's settings reach its server sessions. Without a pgbouncer binary the file reports
// itself skipped, with the reason; without python3-psycopg only the Python test is skipped;
// under CI=true either fails instead.
import { randomUUID } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { createWorker, type Worker } from '../../src/worker/index.js'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import { findPgbouncer, startPgbouncer, type Bouncer } from '../helpers/pgbouncer.js'
import { findPsycopg, startPythonWorker } from '../helpers/python-worker.js'
import { requiresTool } from '../helpers/requires.js'
import { createWorkerLogin, type WorkerLogin } from '../helpers/worker-login.js'

const found = await findPgbouncer()
const runner = typeof found === 'string' ? undefined : found
const { describe: d } = requiresTool(
  'pgbouncer',
  typeof found === 'string' ? found : undefined,
  import.meta.url,
)
const { it: pythonIt } = requiresTool(
  'python3-psycopg',
  runner ? await findPsycopg() : undefined,
  import.meta.url,
)

/** Server connections per login: two, so that two clients can hold one each. */
const POOL_SIZE = 2

let database: TestDatabase
let dir: string | undefined
let bouncer: Bouncer | undefined
/** Sessions start as jobwire_worker (ALTER ROLE … IN DATABASE … SET role). */
let defaultRole: WorkerLogin
/** A plain member of jobwire_worker: its rights by inheritance, current_user the login. */
let member: WorkerLogin
let pool: pg.Pool
const clients: pg.Client[] = []
const workers: Worker[] = []

async function pooled(login: WorkerLogin, options: pg.ClientConfig = {}): Promise<pg.Client> {
  const client = new pg.Client({
    connectionString: bouncer!.url(database.name, login.name),
    ...options,
  })
  client.on('error', () => undefined)
  clients.push(client)
  await client.connect()
  return client
}

async function whoAmI(client: pg.Client): Promise<{ user: string; pid: number }> {
  const { rows } = await client.query<{ user: string; pid: number }>(
    'SELECT current_user AS user, pg_backend_pid() AS pid',
  )
  return rows[0]!
}

async function insertJob(type: string, payload: unknown = {}): Promise<string> {
  const { rows } = await pool.query<{ id: string }>(
    'INSERT INTO job_queue (tenant_id, type, payload) VALUES ($1, $2, $3) RETURNING id',
    [randomUUID(), type, payload],
  )
  return rows[0]!.id
}

/** Waits (by polling the row: no LISTEN here) until the job is terminal. */
async function finished(id: string, timeoutMs = 15_000): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const { rows } = await pool.query<{ status: string }>(
      'SELECT status, progress, step, result, attempts FROM job_queue WHERE id = $1',
      [id],
    )
    const row = rows[0]!
    if (['completed', 'failed', 'cancelled'].includes(row.status)) return row
    if (Date.now() > deadline) throw new Error(`job ${id} still ${row.status}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

d('workers behind PgBouncer in transaction mode', () => {
  beforeAll(async () => {
    database = await createTestDatabase()
    pool = new pg.Pool({ connectionString: database.url, max: 3 })
    defaultRole = await createWorkerLogin(database.url, { defaultRole: true })
    member = await createWorkerLogin(database.url)
    // Which role made each visible change: the trigger runs as the writer's current_user.
    await pool.query(`
      CREATE TABLE written_by (id uuid, version bigint, role name);
      GRANT INSERT ON written_by TO PUBLIC;
      CREATE FUNCTION log_writer() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        INSERT INTO written_by VALUES (NEW.id, NEW.version, current_user);
        RETURN NULL;
      END $$;
      CREATE TRIGGER log_writer AFTER UPDATE ON job_queue FOR EACH ROW
        WHEN (NEW.version IS DISTINCT FROM OLD.version) EXECUTE FUNCTION log_writer();`)
    dir = await mkdtemp(join(tmpdir(), 'jobwire-worker-pgbouncer-'))
    bouncer = await startPgbouncer(runner!, database.url, dir, {
      poolSize: POOL_SIZE,
      maxDbConnections: 4 * POOL_SIZE,
      serverLogin: 'client',
      users: [defaultRole.name, member.name],
    })
  })
  afterAll(async () => {
    await Promise.all(workers.splice(0).map((w) => w.stop({ graceMs: 0 })))
    await Promise.all(clients.splice(0).map((c) => c.end().catch(() => undefined)))
    await bouncer?.stop()
    await pool?.end()
    await database?.drop()
    await defaultRole?.drop()
    await member?.drop()
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  it('refuses a role given as a startup option (options=-c role=…)', async () => {
    const client = new pg.Client({
      connectionString: bouncer!.url(database.name, member.name),
      options: '-c role=jobwire_worker',
    })
    client.on('error', () => undefined)
    await expect(client.connect()).rejects.toThrow(/unsupported startup parameter: options/)
  })

  it('does not keep a session SET ROLE, and passes it to the next client instead', async () => {
    const a = await pooled(member)
    const b = await pooled(member)
    await a.query('SET ROLE jobwire_worker')
    const first = await whoAmI(a)
    expect(first.user).toBe('jobwire_worker')
    // b's transaction gets the server connection a just used: it runs as jobwire_worker
    // without having asked.
    await b.query('BEGIN')
    expect(await whoAmI(b)).toEqual(first)
    // a's next statement needs another server connection, where nobody ran SET ROLE.
    const second = await whoAmI(a)
    expect(second.pid).not.toBe(first.pid)
    expect(second.user).toBe(member.name)
    await b.query('RESET ROLE')
    await b.query('COMMIT')
  })

  it('loses a named prepared statement when the next transaction runs elsewhere', async () => {
    // What psycopg 3 does by itself after 5 executions of a query (hence prepare_threshold=None
    // in examples/python/worker.py), and node-postgres for a query with a `name`: the
    // statement is prepared on one server connection and executed on another.
    const a = await pooled(member)
    const b = await pooled(member)
    const claim = { name: 'claim', text: "SELECT * FROM jobwire_claim('prepared', ARRAY['none'])" }
    await a.query(claim)
    await b.query('BEGIN')
    await b.query('SELECT 1') // holds the server connection a prepared on
    await expect(a.query(claim)).rejects.toMatchObject({
      code: '26000',
      message: 'prepared statement "claim" does not exist',
    })
    await b.query('COMMIT')
  })

  it('starts every pooled session as jobwire_worker for a login whose default role is set', async () => {
    const a = await pooled(defaultRole)
    const b = await pooled(defaultRole)
    // Two transactions open at once: two server connections, both as jobwire_worker.
    await a.query('BEGIN')
    await b.query('BEGIN')
    const [left, right] = [await whoAmI(a), await whoAmI(b)]
    await a.query('COMMIT')
    await b.query('COMMIT')
    expect(left.pid).not.toBe(right.pid)
    expect([left.user, right.user]).toEqual(['jobwire_worker', 'jobwire_worker'])
  })

  it('holds a SET LOCAL ROLE for the transaction it is in', async () => {
    const type = `local-${randomUUID().slice(0, 8)}`
    const id = await insertJob(type)
    const client = await pooled(member)
    await client.query('BEGIN')
    await client.query('SET LOCAL ROLE jobwire_worker')
    await client.query("SELECT * FROM jobwire_claim('local-role', $1, 1, 30)", [[type]])
    expect((await whoAmI(client)).user).toBe('jobwire_worker')
    await client.query('COMMIT')
    expect((await whoAmI(client)).user).toBe(member.name)
    const { rows } = await pool.query('SELECT role FROM written_by WHERE id = $1', [id])
    expect(rows).toEqual([{ role: 'jobwire_worker' }])
  })

  it('lets a plain member work through the pooler without any SET ROLE', async () => {
    const type = `member-${randomUUID().slice(0, 8)}`
    const id = await insertJob(type)
    const client = await pooled(member)
    const { rows } = await client.query<{ id: string }>(
      "SELECT id FROM jobwire_claim('member-worker', $1, 1, 30)",
      [[type]],
    )
    expect(rows.map((r) => r.id)).toEqual([id])
    await client.query("SELECT jobwire_complete($1, 'member-worker', '{}')", [id])
    expect(await finished(id)).toMatchObject({ status: 'completed' })
    // The rights are jobwire_worker's, no more: no DELETE.
    await expect(client.query('DELETE FROM job_queue WHERE id = $1', [id])).rejects.toMatchObject({
      code: '42501',
    })
  })

  it('runs the TypeScript worker runtime through the pooler as jobwire_worker', async () => {
    const type = `ts-${randomUUID().slice(0, 8)}`
    const ids = await Promise.all([1, 2, 3, 4].map(() => insertJob(type)))
    const worker = createWorker({
      connectionString: bouncer!.url(database.name, defaultRole.name),
      statementTimeoutMs: 0, // PgBouncer refuses statement_timeout as a startup parameter
      concurrency: 2,
      pollIntervalMs: 10,
      maxPollIntervalMs: 50,
      handlers: {
        [type]: async (ctx) => {
          ctx.progress(50, 'halfway')
          await new Promise((resolve) => setTimeout(resolve, 20))
          return { id: ctx.job.id }
        },
      },
    })
    workers.push(worker)
    worker.start()
    for (const id of ids) {
      expect(await finished(id)).toMatchObject({ status: 'completed', result: { id } })
    }
    const { rows } = await pool.query<{ role: string }>(
      'SELECT DISTINCT role FROM written_by WHERE id = ANY($1::uuid[])',
      [ids],
    )
    expect(rows).toEqual([{ role: 'jobwire_worker' }])
  })

  pythonIt('runs the Python example worker through the pooler', async () => {
    const type = `py-${randomUUID().slice(0, 8)}`
    const ids = await Promise.all(
      [1, 2].map(() => insertJob(type, { steps: 12, step_seconds: 0.02 })),
    )
    const worker = startPythonWorker({
      DATABASE_URL: bouncer!.url(database.name, defaultRole.name),
      WORKER_TYPES: type,
      WORKER_LEASE_SECONDS: '3',
      WORKER_POLL_SECONDS: '0.02',
      WORKER_MAX_POLL_SECONDS: '0.1',
    })
    try {
      for (const id of ids) {
        const row = await finished(id).catch((error: unknown) => {
          throw new Error(`${String(error)}; worker log:\n${worker.output()}`)
        })
        expect(row).toMatchObject({ status: 'completed', progress: 100, step: 'done' })
      }
    } finally {
      expect(await worker.stop('SIGTERM')).toBe(0)
    }
    expect(worker.output()).toMatch(/started as jobwire_worker/)
    const { rows } = await pool.query<{ role: string }>(
      'SELECT DISTINCT role FROM written_by WHERE id = ANY($1::uuid[])',
      [ids],
    )
    expect(rows).toEqual([{ role: 'jobwire_worker' }])
  })
})
