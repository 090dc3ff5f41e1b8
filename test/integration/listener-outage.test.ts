// The listener connection fails for real (docs/contract.md §10): its backend is terminated, or a TCP
// proxy in front of it cuts it off for longer than 10 s. Notifications sent meanwhile are
// lost by PostgreSQL; the listener keeps reconnecting, readiness says not-ready until it
// is back, and the re-read of every watched job makes the clients converge anyway. In the
// integration-replication project the same happens to the replication stream (its
// walsender is terminated; its temporary slot starts afresh at the present).
import fastJsonPatch, { type Operation } from 'fast-json-patch'
import { sql as sqlTag } from 'kysely'
import pg from 'pg'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import {
  createJob,
  newTenant,
  sourceApplicationName,
  startTestService,
  testEventSource,
  type TestService,
} from '../helpers/service.js'
import { openSse, type SseClient } from '../helpers/sse.js'
import { startTcpProxy, targetOf, type TcpProxy } from '../helpers/tcp-proxy.js'

type Doc = Record<string, unknown> & { version: number }

let database: TestDatabase
let sql: pg.Client
const clients: SseClient[] = []

beforeAll(async () => {
  database = await createTestDatabase()
  sql = new pg.Client({ connectionString: database.url })
  await sql.connect()
})
afterEach(() => {
  for (const client of clients.splice(0)) client.close()
})
afterAll(async () => {
  await sql?.end()
  await database?.drop()
})

async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 5_000) {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

async function readyStatus(service: TestService): Promise<number> {
  const res = await fetch(`${service.url}/readyz`)
  await res.arrayBuffer()
  return res.status
}

/** A watched job: its stream and the client's copy of the document. */
async function watchJob(service: TestService, token: string) {
  const job = await createJob(service, token)
  const stream = await openSse(`${service.url}/v1/jobs/${job.id}/events`, {
    headers: { authorization: `Bearer ${token}` },
  })
  clients.push(stream)
  const doc = (await stream.next('snapshot')).json<Doc>()
  return { id: job.id, stream, doc }
}

/** Applies events until the client's copy equals the row as GET returns it. */
async function converge(
  service: TestService,
  watched: { id: string; stream: SseClient; doc: Doc },
  token: string,
  timeoutMs: number,
): Promise<Doc> {
  const row = (await (await service.fetch(`/v1/jobs/${watched.id}`, { token })).json()) as Doc
  let doc = watched.doc
  while (doc.version < row.version) {
    const event = await watched.stream.next(undefined, timeoutMs)
    if (event.event === 'snapshot') doc = event.json<Doc>()
    else {
      expect(event.event).toBe('patch')
      doc = fastJsonPatch.applyPatch(doc, event.json<Operation[]>(), true, false).newDocument
    }
  }
  expect(doc).toEqual(row)
  return doc
}

describe('when the listener backend is terminated', () => {
  let service: TestService

  beforeAll(async () => {
    // The first reconnect waits LISTENER_RECONNECT_MIN_MS: long enough to see not-ready.
    service = await startTestService(database.url, {
      LISTENER_RECONNECT_MIN_MS: '1500',
      LISTENER_RECONNECT_MAX_MS: '3000',
      SWEEP_INTERVAL_MS: '0',
    })
  })
  afterAll(async () => {
    await service?.close()
  })

  it('reconnects, goes not-ready then ready, and delivers what changed in the gap', async () => {
    const t = newTenant()
    const jobs = [await watchJob(service, t.admin), await watchJob(service, t.admin)]
    expect(await readyStatus(service)).toBe(200)
    const { rows: listeners } = await sql.query<{ pid: number }>(
      `SELECT pid FROM pg_stat_activity
        WHERE application_name = $1 AND datname = current_database()`,
      [sourceApplicationName],
    )
    expect(listeners).toEqual([{ pid: service.listener.backendPid }])

    const { rows } = await sql.query<{ terminated: boolean }>(
      `SELECT pg_terminate_backend(pid) AS terminated FROM pg_stat_activity
        WHERE application_name = $1 AND datname = current_database()`,
      [sourceApplicationName],
    )
    expect(rows).toEqual([{ terminated: true }])
    // Not /readyz: a passing database check is the listener's cue to retry at once.
    await until(() => !service.listener.isConnected, 'the listener to notice')

    // Committed while nobody listens: these notifications are lost.
    for (const job of jobs)
      await sql.query(
        `UPDATE job_queue SET status = 'running', progress = 55, step = 'in the gap' WHERE id = $1`,
        [job.id],
      )
    expect(service.listener.isConnected).toBe(false)
    expect(await readyStatus(service)).toBe(503)

    for (const job of jobs) {
      job.doc = await converge(service, job, t.admin, 10_000)
      expect(job.doc).toMatchObject({ progress: 55, step: 'in the gap', version: 2 })
    }
    await until(async () => (await readyStatus(service)) === 200, '/readyz to report ready again')
    expect(service.listener.reconnects).toBe(1)
    expect(service.listener.backendPid).not.toBe(listeners[0]!.pid)

    // And the new connection carries notifications again.
    await sql.query(`UPDATE job_queue SET progress = 70 WHERE id = $1`, [jobs[0]!.id])
    expect(await converge(service, jobs[0]!, t.admin, 5_000)).toMatchObject({ progress: 70 })
  })
})

describe('the tenant feed across a listener outage', () => {
  let service: TestService
  beforeAll(async () => {
    service = await startTestService(database.url, {
      LISTENER_RECONNECT_MIN_MS: '1500',
      LISTENER_RECONNECT_MAX_MS: '3000',
      SWEEP_INTERVAL_MS: '0',
    })
  })
  afterAll(() => service?.close())

  it('delivers jobs created and changed during the gap that nobody watched one by one', async () => {
    const t = newTenant()
    const before = await createJob(service, t.admin)
    const feed = await openSse(`${service.url}/v1/events`, {
      headers: { authorization: `Bearer ${t.admin}` },
    })
    clients.push(feed)
    expect(feed.status).toBe(200)
    await sql.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE application_name = $1 AND datname = current_database()`,
      [sourceApplicationName],
    )
    // Not /readyz: a passing database check is the listener's cue to retry at once.
    await until(() => !service.listener.isConnected, 'the listener to notice')
    const { rows } = await sql.query<{ id: string }>(
      `INSERT INTO job_queue (tenant_id, owner_id, type) VALUES ($1, 'admin-1', 'in-gap') RETURNING id`,
      [t.tenantId],
    )
    await sql.query(`UPDATE job_queue SET progress = 33 WHERE id = $1`, [before.id])
    expect(service.listener.isConnected).toBe(false)
    expect(await readyStatus(service)).toBe(503)

    const seen = new Map<string, number>()
    while (seen.get(rows[0]!.id) === undefined || (seen.get(before.id) ?? 0) < 2) {
      const event = await feed.next(undefined, 10_000)
      const message = event.json<{ job?: string; version?: number }>()
      if (message.job && message.version) seen.set(message.job, message.version)
    }
    expect(seen.get(rows[0]!.id)).toBe(1)
    expect(seen.get(before.id)).toBe(2)
  })
})

describe('when the listener is cut off for longer than 10 s', () => {
  let service: TestService
  let proxy: TcpProxy

  beforeAll(async () => {
    proxy = await startTcpProxy(targetOf(database.url))
    service = await startTestService(database.url, {
      LISTEN_DATABASE_URL: proxy.url(database.url),
      LISTENER_RECONNECT_MIN_MS: '100',
      LISTENER_RECONNECT_MAX_MS: '1000',
      SWEEP_INTERVAL_MS: '0',
    })
  })
  afterAll(async () => {
    await service?.close()
    await proxy?.close()
  })

  it('keeps retrying through the outage and catches up when it ends', async () => {
    const t = newTenant()
    const job = await watchJob(service, t.admin)
    expect(proxy.connections).toBe(1) // only the listener goes through the proxy

    proxy.pause()
    const cutAt = Date.now()
    await until(() => !service.listener.isConnected, 'the listener to notice')
    await sql.query(`UPDATE job_queue SET status = 'running', progress = 10 WHERE id = $1`, [
      job.id,
    ])

    // The outage lasts 11 s; the listener keeps trying all along and readiness stays 503.
    let attemptsAfter10s = 0
    while (Date.now() - cutAt < 11_000) {
      expect(service.listener.isConnected).toBe(false)
      if (Date.now() - cutAt < 10_000) attemptsAfter10s = proxy.accepted
      await new Promise((resolve) => setTimeout(resolve, 250))
    }
    expect(await readyStatus(service)).toBe(503)
    expect(proxy.accepted).toBeGreaterThan(attemptsAfter10s) // still trying after 10 s
    await sql.query(`UPDATE job_queue SET progress = 20, step = 'late in the gap' WHERE id = $1`, [
      job.id,
    ])

    proxy.resume()
    const doc = await converge(service, job, t.admin, 5_000)
    expect(doc).toMatchObject({ progress: 20, step: 'late in the gap', version: 3 })
    await until(async () => (await readyStatus(service)) === 200, '/readyz to report ready again')
    expect(service.listener.reconnects).toBe(1)
  }, 30_000)
})

describe('when the whole database comes back after an outage', () => {
  let service: TestService
  let proxy: TcpProxy

  beforeAll(async () => {
    // The pool and the listener both go through the proxy: pausing it is a database outage
    // as the service sees one. The listener's next scheduled retry is 10 minutes away.
    proxy = await startTcpProxy(targetOf(database.url))
    service = await startTestService(proxy.url(database.url), {
      LISTENER_RECONNECT_MIN_MS: '600000',
      LISTENER_RECONNECT_MAX_MS: '600000',
      SWEEP_INTERVAL_MS: '0',
    })
  })
  afterAll(async () => {
    await service?.close()
    await proxy?.close()
  })

  it('reconnects the listener as soon as the query pool reaches the database, not at its next retry', async () => {
    const t = newTenant()
    const job = await watchJob(service, t.admin)

    proxy.pause()
    await until(() => !service.listener.isConnected, 'the listener to notice')
    expect(await readyStatus(service)).toBe(503)
    await sql.query(`UPDATE job_queue SET status = 'running', progress = 15 WHERE id = $1`, [
      job.id,
    ])

    proxy.resume()
    // The next readiness check connects the pool again; that is the listener's cue.
    await until(async () => (await readyStatus(service)) === 200, '/readyz to report ready again')
    expect(service.listener.reconnects).toBe(1)
    const doc = await converge(service, job, t.admin, 5_000)
    expect(doc).toMatchObject({ status: 'running', progress: 15, version: 2 })
  })

  it('survives a connection cut in the middle of a query, and serves again after', async () => {
    // Cut without a word from the server (a network failure, a proxy or pooler dying): the
    // query fails, and nothing else may (a lent-out pool client has no error listener).
    const query = sqlTag`SELECT pg_sleep(5)`.execute(service.db)
    await until(async () => {
      const { rows } = await sql.query(
        `SELECT 1 FROM pg_stat_activity
          WHERE application_name = 'jobwire' AND query = 'SELECT pg_sleep(5)' AND datname = current_database()`,
      )
      return rows.length === 1
    }, 'the query to run')
    proxy.pause()
    await expect(query).rejects.toThrow(/Connection terminated/)
    proxy.resume()
    await until(async () => (await readyStatus(service)) === 200, '/readyz to report ready again')
    const t = newTenant()
    expect((await service.fetch('/v1/jobs', { token: t.admin })).status).toBe(200)
  })
})

describe("when only the listener's path to the database was cut", () => {
  let service: TestService
  let proxy: TcpProxy

  beforeAll(async () => {
    // The pool's connections survive (as they do behind PgBouncer): no new pool connection
    // can be the cue, a readiness check that reaches the database is.
    proxy = await startTcpProxy(targetOf(database.url))
    service = await startTestService(database.url, {
      LISTEN_DATABASE_URL: proxy.url(database.url),
      LISTENER_RECONNECT_MIN_MS: '600000',
      LISTENER_RECONNECT_MAX_MS: '600000',
      SWEEP_INTERVAL_MS: '0',
    })
  })
  afterAll(async () => {
    await service?.close()
    await proxy?.close()
  })

  it('reconnects at the first readiness check after the path is back', async () => {
    const t = newTenant()
    const job = await watchJob(service, t.admin)
    proxy.pause()
    await until(() => !service.listener.isConnected, 'the listener to notice')
    // Checks while the path is still cut try early and fail; the listener keeps waiting.
    expect(await readyStatus(service)).toBe(503)
    expect(await readyStatus(service)).toBe(503)
    await sql.query(`UPDATE job_queue SET status = 'running', progress = 25 WHERE id = $1`, [
      job.id,
    ])

    proxy.resume()
    await until(async () => (await readyStatus(service)) === 200, '/readyz to report ready again')
    expect(service.listener.reconnects).toBe(1)
    const doc = await converge(service, job, t.admin, 5_000)
    expect(doc).toMatchObject({ status: 'running', progress: 25, version: 2 })
  })
})

describe('when a notification is lost some other way', () => {
  let service: TestService

  beforeAll(async () => {
    service = await startTestService(database.url, { SWEEP_INTERVAL_MS: '300' })
  })
  afterAll(async () => {
    await service?.close()
  })

  it('the safety sweep re-reads watched jobs and delivers the change', async () => {
    const t = newTenant()
    const job = await watchJob(service, t.admin)
    // The row changes (its version too) but the source is not told: no NOTIFY is sent, or
    // (replication) the publication leaves updates out while it commits.
    const [off, on] =
      testEventSource === 'replication'
        ? [
            `ALTER PUBLICATION jobwire_job_queue SET (publish = 'insert, delete')`,
            `ALTER PUBLICATION jobwire_job_queue SET (publish = 'insert, update, delete')`,
          ]
        : [
            `ALTER TABLE job_queue DISABLE TRIGGER job_queue_notify_update`,
            `ALTER TABLE job_queue ENABLE TRIGGER job_queue_notify_update`,
          ]
    await sql.query(off)
    try {
      await sql.query(`UPDATE job_queue SET status = 'running', progress = 33 WHERE id = $1`, [
        job.id,
      ])
    } finally {
      await sql.query(on)
    }
    expect(service.listener.isConnected).toBe(true)
    const doc = await converge(service, job, t.admin, 5_000)
    expect(doc).toMatchObject({ status: 'running', progress: 33, version: 2 })
  })
})
