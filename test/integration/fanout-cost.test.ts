// What watching costs the database (docs/contract.md §10): one change watched by 500 SSE clients is
// read once, in one batched query, and reaches them all; 200 idle watchers (SSE and long-poll) cost
// no query at all.
import pg from 'pg'
import { createTestDatabase, serverUrl, type TestDatabase } from '../helpers/database.js'
import {
  createJob,
  newTenant,
  startTestService,
  tokenFor,
  type TestService,
} from '../helpers/service.js'
import { openSse, type SseClient } from '../helpers/sse.js'

let database: TestDatabase
let sql: pg.Client

beforeAll(async () => {
  database = await createTestDatabase()
  sql = new pg.Client({ connectionString: database.url })
  await sql.connect()
})
afterAll(async () => {
  await sql?.end()
  await database?.drop()
})

async function until(check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** `n` admin tokens of one tenant: streams are capped per user (MAX_STREAMS_PER_USER). */
function admins(tenantId: string, n: number): string[] {
  return Array.from({ length: n }, (_, i) => tokenFor({ tenantId, role: 'admin', sub: `ops-${i}` }))
}

// Only the event pipeline may touch the database here: no sweep, no lease reaper.
const quiet = { SWEEP_INTERVAL_MS: '0', LEASE_REAPER_INTERVAL_MS: '0' }

describe('fan-out', () => {
  let service: TestService
  const clients: SseClient[] = []

  beforeAll(async () => {
    service = await startTestService(database.url, quiet)
  })
  afterAll(async () => {
    for (const c of clients) c.close()
    await service?.close()
  })

  it('builds or reads a change once for 500 watchers and delivers the same patch to each', async () => {
    const t = newTenant()
    const tokens = admins(t.tenantId, 10)
    const job = await createJob(service, t.admin)
    for (let i = 0; i < 500; i += 100) {
      const batch = await Promise.all(
        Array.from({ length: 100 }, (_, j) =>
          openSse(`${service.url}/v1/jobs/${job.id}/events`, {
            headers: { authorization: `Bearer ${tokens[(i + j) % tokens.length]!}` },
          }),
        ),
      )
      clients.push(...batch)
    }
    for (const c of clients) expect(c.status).toBe(200)
    await Promise.all(clients.map((c) => c.next('snapshot')))
    expect(service.hub.watchedJobs).toBe(1)
    expect(service.hub.watcherCount).toBe(500)

    // A small change is built from its notification: no read at all.
    let before = { ...service.hub.stats }
    await sql.query(`UPDATE job_queue SET status = 'running', progress = 99 WHERE id = $1`, [
      job.id,
    ])
    let patches = await Promise.all(clients.map((c) => c.next('patch', 15_000)))
    expect(service.hub.stats.fetches - before.fetches).toBe(0)
    expect(service.hub.stats.built - before.built).toBe(1)
    expect(service.hub.stats.changes - before.changes).toBe(1)
    expect(new Set(patches.map((p) => p.data)).size).toBe(1)
    expect(new Set(patches.map((p) => p.id))).toEqual(new Set(['2']))
    expect(patches[0]!.json()).toContainEqual({ op: 'replace', path: '/progress', value: 99 })

    // A completion carries a result, which a notification never does: one read, for all.
    before = { ...service.hub.stats }
    await sql.query(
      `UPDATE job_queue SET status = 'completed', result = '{"rows": 3}' WHERE id = $1`,
      [job.id],
    )
    patches = await Promise.all(clients.map((c) => c.next('patch', 15_000)))
    expect(service.hub.stats.fetches - before.fetches).toBe(1)
    expect(service.hub.stats.fetchedRows - before.fetchedRows).toBe(1)
    expect(service.hub.stats.built - before.built).toBe(0)
    expect(new Set(patches.map((p) => p.data)).size).toBe(1)
    expect(patches[0]!.json()).toContainEqual({
      op: 'replace',
      path: '/result',
      value: { rows: 3 },
    })

    for (const c of clients.splice(0)) c.close()
    await until(
      () => service.registry.size === 0 && service.hub.watchedJobs === 0,
      'every stream to be freed',
    )
  }, 60_000)
})

describe('idle cost', () => {
  let service: TestService
  const clients: SseClient[] = []
  const controller = new AbortController()

  beforeAll(async () => {
    // One pool connection, so that one query through it flushes all of its statistics.
    service = await startTestService(database.url, { ...quiet, DB_POOL_MAX: '1' })
  })
  afterAll(async () => {
    controller.abort()
    for (const c of clients) c.close()
    await service?.close()
  })

  interface Backend {
    pid: number
    application_name: string
    query_start: string | null
    query: string
  }

  /** The service's backends in the test database, read from another database. */
  async function serviceBackends(admin: pg.Client): Promise<Backend[]> {
    const { rows } = await admin.query<Backend>(
      `SELECT pid, application_name, query_start::text, query FROM pg_stat_activity
        WHERE datname = $1 AND application_name IN ('jobwire', 'jobwire-listener')
        ORDER BY pid`,
      [database.name],
    )
    return rows
  }

  /**
   * The database's committed transactions and reads of job_queue, from a fresh connection:
   * its own statement adds one commit, counted by the next reading.
   */
  async function counters(): Promise<{ commits: number; jobReads: number }> {
    const probe = new pg.Client({ connectionString: database.url })
    await probe.connect()
    try {
      const { rows } = await probe.query<{ commits: string; job_reads: string }>(
        `SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database())
                  AS commits,
                (SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_all_tables
                  WHERE relid = 'job_queue'::regclass) AS job_reads`,
      )
      return { commits: Number(rows[0]!.commits), jobReads: Number(rows[0]!.job_reads) }
    } finally {
      await probe.end()
    }
  }

  /** One known query through the pool; its backend flushes pending statistics on idle. */
  async function flushPoolStatistics(): Promise<void> {
    const res = await fetch(`${service.url}/readyz`)
    expect(res.status).toBe(200)
  }

  it('200 idle watchers, SSE and long-poll, cost no query for 3 s', async () => {
    const t = newTenant()
    const tokens = admins(t.tenantId, 4)
    const jobs = await Promise.all(Array.from({ length: 20 }, () => createJob(service, t.admin)))
    const streams = Array.from({ length: 100 }, (_, i) =>
      openSse(`${service.url}/v1/jobs/${jobs[i % jobs.length]!.id}/events`, {
        headers: { authorization: `Bearer ${tokens[i % tokens.length]!}` },
      }),
    )
    for (let i = 0; i < 100; i++) {
      const wait = fetch(
        `${service.url}/v1/jobs/${jobs[i % jobs.length]!.id}/wait?since=1&timeout=60`,
        {
          headers: { authorization: `Bearer ${tokens[i % tokens.length]!}` },
          signal: controller.signal,
        },
      )
      wait.catch(() => undefined) // aborted at the end
    }
    clients.push(...(await Promise.all(streams)))
    await Promise.all(clients.map((c) => c.next('snapshot')))
    await until(() => service.registry.countByKind('longpoll') === 100, '100 parked long-polls')
    expect(service.registry.size).toBe(200)
    expect(service.hub.watchedJobs).toBe(20)

    const admin = new pg.Client({ connectionString: serverUrl() })
    await admin.connect()
    try {
      // PostgreSQL flushes a backend's statistics at most once a second (PG 15+; more
      // often they wait up to 10 s): one second after the last subscription read, a query
      // through the one pool connection flushes them, so the baseline is complete.
      await new Promise((resolve) => setTimeout(resolve, 1_100))
      await flushPoolStatistics()
      const fetchesBefore = service.hub.stats.fetches
      const backendsBefore = await serviceBackends(admin)
      const before = await counters()

      // The idle window, watched for autovacuum workers (their commits are not ours).
      let sawAutovacuum = false
      const windowEnd = Date.now() + 3_000
      while (Date.now() < windowEnd) {
        const { rowCount } = await admin.query(
          `SELECT 1 FROM pg_stat_activity
            WHERE datname = $1 AND backend_type = 'autovacuum worker'`,
          [database.name],
        )
        if (rowCount) sawAutovacuum = true
        await new Promise((resolve) => setTimeout(resolve, 20))
      }

      // Exact and immediate: no service backend started a statement, none was opened.
      const backendsAfter = await serviceBackends(admin)
      const pings = backendsAfter.filter((b) => {
        const was = backendsBefore.find((x) => x.pid === b.pid)
        return b.application_name === 'jobwire-listener' && was?.query_start !== b.query_start
      })
      for (const ping of pings) expect(ping.query).toBe('SELECT 1') // the listener's liveness check
      expect(
        backendsAfter.filter((b) => b.application_name === 'jobwire').map((b) => b.query_start),
      ).toEqual(
        backendsBefore.filter((b) => b.application_name === 'jobwire').map((b) => b.query_start),
      )
      expect(service.hub.stats.fetches).toBe(fetchesBefore)

      // The cumulative statistics agree: flush the pool connection again, then count.
      await flushPoolStatistics()
      const after = await counters()
      expect(after.jobReads - before.jobReads).toBe(0)
      // Commits: our first reading (1), the second flushing query (1), listener pings.
      if (!sawAutovacuum) expect(after.commits - before.commits).toBe(2 + pings.length)
      expect(service.registry.size).toBe(200)
    } finally {
      await admin.end()
    }
  }, 60_000)
})
