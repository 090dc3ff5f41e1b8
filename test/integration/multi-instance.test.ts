// Two API processes on one database (docs/contract.md §10): each holds its own listener, so a
// change made through either process, or directly in SQL, reaches watchers on both; a client may
// resume on the other process and still converge.
import fastJsonPatch, { type Operation } from 'fast-json-patch'
import pg from 'pg'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import {
  createJob,
  newTenant,
  sourceApplicationName,
  startTestService,
  type TestService,
} from '../helpers/service.js'
import { openSse, type SseClient } from '../helpers/sse.js'

type Doc = Record<string, unknown> & { version: number }

let database: TestDatabase
let a: TestService
let b: TestService
let sql: pg.Client
const clients: SseClient[] = []

beforeAll(async () => {
  database = await createTestDatabase()
  ;[a, b] = await Promise.all([startTestService(database.url), startTestService(database.url)])
  sql = new pg.Client({ connectionString: database.url })
  await sql.connect()
})
afterEach(() => {
  for (const client of clients.splice(0)) client.close()
})
afterAll(async () => {
  await sql?.end()
  await Promise.all([a?.close(), b?.close()])
  await database?.drop()
})

async function watch(service: TestService, id: string, token: string, lastEventId?: string) {
  const headers: Record<string, string> = { authorization: `Bearer ${token}` }
  if (lastEventId !== undefined) headers['last-event-id'] = lastEventId
  const stream = await openSse(`${service.url}/v1/jobs/${id}/events`, { headers })
  clients.push(stream)
  expect(stream.status).toBe(200)
  return stream
}

function applyPatch(doc: Doc, patch: Operation[]): Doc {
  expect(patch[0]).toEqual({ op: 'test', path: '/version', value: doc.version })
  return fastJsonPatch.applyPatch(doc, patch, true, false).newDocument
}

async function getJob(service: TestService, id: string, token: string): Promise<Doc> {
  return (await (await service.fetch(`/v1/jobs/${id}`, { token })).json()) as Doc
}

describe('two service instances on one database', () => {
  it('each holds its own listener connection', async () => {
    const { rows } = await sql.query<{ pid: number }>(
      `SELECT pid FROM pg_stat_activity
        WHERE application_name = $1 AND datname = current_database()
        ORDER BY pid`,
      [sourceApplicationName],
    )
    expect(rows.map((r) => r.pid)).toEqual(
      [a.listener.backendPid, b.listener.backendPid].sort((x, y) => x! - y!),
    )
  })

  it('delivers a SQL change and a cancel made through A to a watcher on B', async () => {
    const t = newTenant()
    const job = await createJob(a, t.admin)
    const onB = await watch(b, job.id, t.admin)
    const onA = await watch(a, job.id, t.admin)
    let doc = (await onB.next('snapshot')).json<Doc>()
    await onA.next('snapshot')

    await sql.query(`UPDATE job_queue SET status = 'running', progress = 30 WHERE id = $1`, [
      job.id,
    ])
    doc = applyPatch(doc, (await onB.next('patch')).json())
    expect(doc).toMatchObject({ status: 'running', progress: 30 })

    // A running job: the cancel through A asks its worker to stop.
    const cancel = await a.fetch(`/v1/jobs/${job.id}/cancel`, { method: 'POST', token: t.admin })
    expect(cancel.status).toBe(202)
    doc = applyPatch(doc, (await onB.next('patch')).json())
    expect(doc).toMatchObject({ status: 'running', cancel_requested: true })

    // The worker (plain SQL) acknowledges.
    await sql.query(`UPDATE job_queue SET status = 'cancelled' WHERE id = $1`, [job.id])
    doc = applyPatch(doc, (await onB.next('patch')).json())
    await onB.next('end')
    await onB.closed
    expect(doc).toEqual(await getJob(b, job.id, t.admin))
    expect(doc).toMatchObject({ status: 'cancelled', version: 4 })

    // The watcher on A converged to the same row (changes close together may arrive there
    // merged into one patch: its versions only rise, and end at the same one).
    await onA.next('end')
    let onADoc = onA.events[0]!.json<Doc>()
    for (const e of onA.events.slice(1, -1)) onADoc = applyPatch(onADoc, e.json())
    expect(onADoc).toEqual(doc)
    const versions = onA.events.map((e) => Number(e.id))
    expect(versions.slice(0, -1)).toEqual([...new Set(versions.slice(0, -1))].sort((x, y) => x - y))
  })

  it('delivers the cancel of a queued job through A to a watcher on B, then ends', async () => {
    const t = newTenant()
    const job = await createJob(a, t.admin)
    const onB = await watch(b, job.id, t.admin)
    let doc = (await onB.next('snapshot')).json<Doc>()
    const cancel = await a.fetch(`/v1/jobs/${job.id}/cancel`, { method: 'POST', token: t.admin })
    expect(cancel.status).toBe(200)
    doc = applyPatch(doc, (await onB.next('patch')).json())
    expect(doc).toMatchObject({ status: 'cancelled' })
    await onB.next('end')
    await onB.closed
  })

  it('lets a client that watched on A resume on B and converge', async () => {
    const t = newTenant()
    const job = await createJob(a, t.admin)
    const onA = await watch(a, job.id, t.admin)
    const snapshot = await onA.next('snapshot')
    onA.close()
    await sql.query(`UPDATE job_queue SET status = 'running', progress = 64 WHERE id = $1`, [
      job.id,
    ])
    const onB = await watch(b, job.id, t.admin, snapshot.id)
    const event = await onB.next()
    // B never saw version 1 of this job: a snapshot is the honest answer.
    const doc = event.event === 'patch' ? applyPatch(snapshot.json(), event.json()) : event.json()
    expect(doc).toEqual(await getJob(a, job.id, t.admin))
  })

  it('wakes a long-poll on B with a change made through A', async () => {
    const t = newTenant()
    const job = await createJob(a, t.admin)
    const waiting = b.fetch(`/v1/jobs/${job.id}/wait?timeout=10`, { token: t.admin })
    // The waiter is parked once B's registry holds it.
    const deadline = Date.now() + 5_000
    while (b.registry.countByKind('longpoll') === 0) {
      if (Date.now() > deadline) throw new Error('the long-poll never parked')
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
    const cancel = await a.fetch(`/v1/jobs/${job.id}/cancel`, { method: 'POST', token: t.admin })
    expect(cancel.status).toBe(200)
    const res = await waiting
    expect(res.status).toBe(200)
    expect(res.headers.get('jobwire-timed-out')).toBe('false')
    expect(await res.json()).toMatchObject({ status: 'cancelled', version: 2 })
  })
})
