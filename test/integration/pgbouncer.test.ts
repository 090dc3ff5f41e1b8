// jobwire behind PgBouncer in transaction mode (docs/contract.md §10,
// deploy/docker-compose.pgbouncer.yml): the API's query pool goes through the pooler, the listener
// holds a direct session. The test starts Debian's pgbouncer itself, on a free 127.0.0.1 port, in
// front of this file's test database, with default_pool_size = 3 so that many client connections
// (the service's pool of 10, the test's own clients) share three server connections, and shows that
// REST, row-level security and streaming all hold that way. It also shows the two traps the docs
// warn about: DB_STATEMENT_TIMEOUT_MS sent as a startup parameter is refused by PgBouncer, and a
// LISTEN made through a transaction pooler is silently deaf.
//
// Without a pgbouncer binary (apt-get install -y pgbouncer; or PGBOUNCER_BIN) the file reports
// itself skipped, with the reason, and the rest of the suite runs; under CI=true it fails.
import { randomUUID } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fastJsonPatch, { type Operation } from 'fast-json-patch'
import pg from 'pg'
import { createPool } from '../../src/db/pool.js'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import { findPgbouncer, startPgbouncer, type Bouncer } from '../helpers/pgbouncer.js'
import { requiresTool } from '../helpers/requires.js'
import { createJob, newTenant, startTestService, type TestService } from '../helpers/service.js'
import { openSse, type SseClient } from '../helpers/sse.js'

/** Server connections PgBouncer may open to the test database. */
const SERVER_POOL_SIZE = 3

const found = await findPgbouncer()
const runner = typeof found === 'string' ? undefined : found
const { describe: d } = requiresTool(
  'pgbouncer',
  typeof found === 'string' ? found : undefined,
  import.meta.url,
)

// ---- The tests. ----

type Doc = Record<string, unknown> & { id: string; version: number; status: string }

let database: TestDatabase
let dir: string | undefined
let bouncer: Bouncer | undefined
let pooledUrl: string
let service: TestService
let sql: pg.Client
const services: TestService[] = []
const streams: SseClient[] = []

/** The API through the pooler, its listener direct: the documented set-up. */
const POOLED_ENV = {
  DB_STATEMENT_TIMEOUT_MS: '0',
  DB_PREPARED_STATEMENTS: 'false',
  RATE_LIMIT_PER_IP: '100000',
}

async function start(env: Record<string, string>): Promise<TestService> {
  const started = await startTestService(pooledUrl, { ...POOLED_ENV, ...env })
  services.push(started)
  return started
}

async function watch(on: TestService, id: string, token: string): Promise<SseClient> {
  const stream = await openSse(`${on.url}/v1/jobs/${id}/events`, {
    headers: { authorization: `Bearer ${token}` },
  })
  streams.push(stream)
  return stream
}

function applyPatch(doc: Doc, patch: Operation[]): Doc {
  expect(patch[0]).toEqual({ op: 'test', path: '/version', value: doc.version })
  return fastJsonPatch.applyPatch(doc, patch, true, false).newDocument
}

async function json<T>(res: Response): Promise<T> {
  return (await res.json()) as T
}

/** Backends of the test database that reached PostgreSQL through the pooler. */
async function pooledBackends(): Promise<number> {
  const { rows } = await sql.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE datname = current_database() AND backend_type = 'client backend'
        AND pid <> pg_backend_pid() AND pid <> ALL($1::int[])`,
    [services.map((s) => s.listener.backendPid).filter((pid) => pid !== undefined)],
  )
  return rows[0]!.n
}

d('jobwire behind PgBouncer in transaction mode', () => {
  beforeAll(async () => {
    database = await createTestDatabase()
    const target = new URL(database.url)
    const user = decodeURIComponent(target.username) || 'postgres'
    // The documented replacement for the startup parameter: a per-role default, which every
    // server connection PgBouncer opens picks up. Scoped to this database (dropped with it).
    const admin = new pg.Client({ connectionString: database.url })
    await admin.connect()
    await admin.query(
      `ALTER ROLE ${pg.escapeIdentifier(user)} IN DATABASE ${pg.escapeIdentifier(database.name)}
         SET statement_timeout = '25s'`,
    )
    await admin.end()

    dir = await mkdtemp(join(tmpdir(), 'jobwire-pgbouncer-'))
    bouncer = await startPgbouncer(runner!, database.url, dir, { poolSize: SERVER_POOL_SIZE })
    pooledUrl = bouncer.url(database.name)
    service = await start({ LISTEN_DATABASE_URL: database.url })
    sql = new pg.Client({ connectionString: database.url })
    await sql.connect()
  })
  afterEach(() => {
    for (const stream of streams.splice(0)) stream.close()
  })
  afterAll(async () => {
    for (const stream of streams.splice(0)) stream.close()
    await Promise.all(services.splice(0).map((s) => s.close()))
    await sql?.end()
    await bouncer?.stop()
    await database?.drop()
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  it('is ready, with the listener on its own direct session', async () => {
    const res = await service.fetch('/readyz')
    expect(res.status).toBe(200)
    expect(await res.json()).toMatchObject({ checks: { database: 'ok', listener: 'ok' } })
    const { rows } = await sql.query<{ application_name: string }>(
      'SELECT application_name FROM pg_stat_activity WHERE pid = $1',
      [service.listener.backendPid],
    )
    expect(rows).toEqual([{ application_name: 'jobwire-listener' }])
  })

  it('serves create, idempotent replay, list, get and cancel through the pooler', async () => {
    const t = newTenant()
    const key = randomUUID()
    const created = await createJob(service, t.alice, { type: 'pgb' }, { 'idempotency-key': key })
    expect(created).toMatchObject({ status: 'queued', version: 1 })
    // The replay runs the insert and then the lookup in one pooled transaction.
    const replay = await service.fetch('/v1/jobs', {
      method: 'POST',
      token: t.alice,
      headers: { 'content-type': 'application/json', 'idempotency-key': key },
      body: JSON.stringify({ type: 'pgb' }),
    })
    expect(replay.status).toBe(200)
    expect((await json<Doc>(replay)).id).toBe(created.id)

    const got = await service.fetch(`/v1/jobs/${created.id}`, { token: t.alice })
    expect(got.status).toBe(200)
    expect(await json<Doc>(got)).toMatchObject({ id: created.id, status: 'queued' })

    const list = await json<{ data: Doc[] }>(await service.fetch('/v1/jobs', { token: t.alice }))
    expect(list.data.map((j) => j.id)).toEqual([created.id])

    const cancel = await service.fetch(`/v1/jobs/${created.id}/cancel`, {
      method: 'POST',
      token: t.alice,
    })
    expect(cancel.status).toBe(200)
    expect(await json<Doc>(cancel)).toMatchObject({ status: 'cancelled', version: 2 })
    const after = await json<Doc>(await service.fetch(`/v1/jobs/${created.id}`, { token: t.admin }))
    expect(after).toMatchObject({ status: 'cancelled', version: 2 })
  })

  it('keeps tenants and members apart while 3 server connections serve them all', async () => {
    const A = newTenant()
    const B = newTenant()
    const members = { 'A.alice': A.alice, 'A.bob': A.bob, 'B.alice': B.alice, 'B.bob': B.bob }
    const owned: Record<string, string[]> = {}
    await Promise.all(
      Object.entries(members).map(async ([who, token]) => {
        const jobs = await Promise.all([1, 2, 3].map(() => createJob(service, token)))
        owned[who] = jobs.map((j) => j.id).sort()
      }),
    )
    const visible: Record<string, { token: string; ids: string[] }> = {
      'A.admin': { token: A.admin, ids: [...owned['A.alice']!, ...owned['A.bob']!].sort() },
      'B.admin': { token: B.admin, ids: [...owned['B.alice']!, ...owned['B.bob']!].sort() },
      ...Object.fromEntries(
        Object.entries(members).map(([who, token]) => [who, { token, ids: owned[who]! }]),
      ),
    }
    const allIds = Object.values(owned).flat()

    // 60 requests at once, of every kind, for all six principals: each list must be exactly
    // what that principal may see, each read 200 or 404 by the same rule.
    type Check = { label: string; run: () => Promise<void> }
    const checks: Check[] = []
    const principals = Object.entries(visible)
    for (let i = 0; checks.length < 60; i++) {
      const [who, { token, ids }] = principals[i % principals.length]!
      if (i % 2 === 0) {
        checks.push({
          label: `${who} lists`,
          run: async () => {
            const res = await service.fetch('/v1/jobs?limit=100', { token })
            expect(res.status).toBe(200)
            const body = await json<{ data: Doc[] }>(res)
            expect(body.data.map((j) => j.id).sort()).toEqual(ids)
          },
        })
      } else {
        const id = allIds[(i * 7) % allIds.length]!
        const expected = ids.includes(id) ? 200 : 404
        checks.push({
          label: `${who} reads ${id} (${expected})`,
          run: async () => {
            const res = await service.fetch(`/v1/jobs/${id}`, { token })
            expect(res.status).toBe(expected)
            if (expected === 200) expect((await json<Doc>(res)).id).toBe(id)
            else await res.arrayBuffer()
          },
        })
      }
    }
    const outcomes = await Promise.allSettled(checks.map((c) => c.run()))
    const failures = outcomes.flatMap((o, i) =>
      o.status === 'rejected' ? [`${checks[i]!.label}: ${String(o.reason)}`] : [],
    )
    expect(failures).toEqual([])
    const reads = checks.filter((c) => c.label.includes(' reads '))
    expect(reads.some((c) => c.label.endsWith('(200)'))).toBe(true)
    expect(reads.some((c) => c.label.endsWith('(404)'))).toBe(true)

    // Many client connections, never more than 3 server connections behind them.
    const clients = await bouncer!.admin<{ database: string }>('SHOW CLIENTS')
    expect(clients.filter((c) => c.database === database.name).length).toBeGreaterThan(
      SERVER_POOL_SIZE,
    )
    const servers = await bouncer!.admin<{ database: string }>('SHOW SERVERS')
    const ours = servers.filter((s) => s.database === database.name).length
    expect(ours).toBeGreaterThan(0)
    expect(ours).toBeLessThanOrEqual(SERVER_POOL_SIZE)
    expect(await pooledBackends()).toBeLessThanOrEqual(SERVER_POOL_SIZE)

    // A tenant B admin meets A's job as if it did not exist, on every route.
    const aJob = owned['A.alice']![0]!
    expect((await service.fetch(`/v1/jobs/${aJob}`, { token: B.admin })).status).toBe(404)
    const cancel = await service.fetch(`/v1/jobs/${aJob}/cancel`, {
      method: 'POST',
      token: B.admin,
    })
    expect(cancel.status).toBe(404)
    const stream = await watch(service, aJob, B.admin)
    expect(stream.status).toBe(404)
    // …and A's job is untouched.
    const { rows } = await sql.query(
      'SELECT status, version::int AS version FROM job_queue WHERE id = $1',
      [aJob],
    )
    expect(rows).toEqual([{ status: 'queued', version: 1 }])
  })

  it('leaves no role or tenant setting behind on any server connection', async () => {
    // Hold SERVER_POOL_SIZE transactions open at once: each has a server connection of its
    // own, so together they inspect every connection the requests above ran on.
    const clients = await Promise.all(
      Array.from({ length: SERVER_POOL_SIZE }, async () => {
        const client = new pg.Client({ connectionString: pooledUrl })
        await client.connect()
        return client
      }),
    )
    try {
      await Promise.all(clients.map((c) => c.query('BEGIN')))
      const rows = await Promise.all(
        clients.map(
          async (c) =>
            (
              await c.query<{
                pid: number
                role: string
                tenant: string | null
                user_id: string | null
                timeout: string
              }>(
                `SELECT pg_backend_pid() AS pid, current_user AS role,
                        current_setting('jobwire.tenant_id', true) AS tenant,
                        current_setting('jobwire.user_id', true) AS user_id,
                        current_setting('statement_timeout') AS timeout`,
              )
            ).rows[0]!,
        ),
      )
      await Promise.all(clients.map((c) => c.query('COMMIT')))
      expect(new Set(rows.map((r) => r.pid)).size).toBe(SERVER_POOL_SIZE)
      const login = decodeURIComponent(new URL(database.url).username) || 'postgres'
      for (const row of rows) {
        expect(row.role).toBe(login)
        expect(row.tenant ?? '').toBe('')
        expect(row.user_id ?? '').toBe('')
        // The per-role statement_timeout reached the pooled sessions.
        expect(row.timeout).toBe('25s')
      }
    } finally {
      await Promise.all(clients.map((c) => c.end()))
    }
  })

  it('streams a change made in SQL and one made through the API to an SSE watcher', async () => {
    const t = newTenant()
    const job = await createJob(service, t.alice)
    const stream = await watch(service, job.id, t.alice)
    expect(stream.status).toBe(200)
    let doc = (await stream.next('snapshot')).json<Doc>()
    expect(doc).toMatchObject({ id: job.id, status: 'queued', version: 1 })

    await sql.query(`UPDATE job_queue SET status = 'running', progress = 40 WHERE id = $1`, [
      job.id,
    ])
    doc = applyPatch(doc, (await stream.next('patch')).json())
    expect(doc).toMatchObject({ status: 'running', progress: 40, version: 2 })

    // Through the API (and so through PgBouncer): a running job is asked to stop.
    const cancel = await service.fetch(`/v1/jobs/${job.id}/cancel`, {
      method: 'POST',
      token: t.alice,
    })
    expect(cancel.status).toBe(202)
    doc = applyPatch(doc, (await stream.next('patch')).json())
    expect(doc).toMatchObject({ status: 'running', cancel_requested: true, version: 3 })
    expect(await json<Doc>(await service.fetch(`/v1/jobs/${job.id}`, { token: t.alice }))).toEqual(
      doc,
    )
  })

  it('is refused by PgBouncer when statement_timeout goes as a startup parameter', async () => {
    // DB_STATEMENT_TIMEOUT_MS > 0 (the default, 30 s) makes node-postgres send
    // statement_timeout in the startup packet; PgBouncer rejects parameters it does not know.
    const pool = createPool({ connectionString: pooledUrl, max: 1, statementTimeoutMs: 30_000 })
    pool.on('error', () => undefined)
    try {
      await expect(pool.query('SELECT 1')).rejects.toThrow(
        /unsupported startup parameter: statement_timeout/,
      )
    } finally {
      await pool.end()
    }
    // The service does not hide it: readiness says the database is failing.
    const misconfigured = await start({
      LISTEN_DATABASE_URL: database.url,
      DB_STATEMENT_TIMEOUT_MS: '30000',
    })
    const res = await misconfigured.fetch('/readyz')
    expect(res.status).toBe(503)
    expect(await res.json()).toMatchObject({ checks: { database: 'failing', listener: 'ok' } })
  })

  // Last: the deaf listener leaves a LISTEN registered on one of PgBouncer's server
  // connections for as long as that connection lives.
  it('loses notifications when the listener, too, goes through the transaction pooler', async () => {
    // The listener connects, LISTENs and reports ready, but its LISTEN ran on whichever
    // server connection PgBouncer lent it for that one statement, and that connection went
    // back to the pool. A NOTIFY reaches that backend while no client is linked to it, and
    // PgBouncer drops it. Deterministic as long as the listener sends nothing else: its
    // first keep-alive ping is 15 s away, and the safety sweep is off here.
    const deaf = await start({ LISTEN_DATABASE_URL: pooledUrl, SWEEP_INTERVAL_MS: '0' })
    expect(deaf.listener.isConnected).toBe(true)
    expect((await deaf.fetch('/readyz')).status).toBe(200)

    const t = newTenant()
    const job = await createJob(service, t.admin)
    const good = await watch(service, job.id, t.admin)
    const bad = await watch(deaf, job.id, t.admin)
    let doc = (await good.next('snapshot')).json<Doc>()
    expect((await bad.next('snapshot')).json<Doc>()).toEqual(doc)

    await sql.query(`UPDATE job_queue SET status = 'running', progress = 10 WHERE id = $1`, [
      job.id,
    ])
    // The direct listener delivers it…
    doc = applyPatch(doc, (await good.next('patch')).json())
    expect(doc).toMatchObject({ status: 'running', progress: 10 })
    // …the pooled one never hears of it.
    await expect(bad.next('patch', 2000)).rejects.toThrow(/no patch within/)
    expect(bad.events.map((e) => e.event)).toEqual(['snapshot'])
    expect(deaf.listener.isConnected).toBe(true)
  })
})
