// WebSocket transport (docs/contract.md §9): `GET /v1/ws` multiplexed subscribe/unsubscribe and the
// single-job upgrade on `GET /v1/jobs/:id`, against real PostgreSQL and real sockets. Rows
// are changed by direct SQL, the way a worker in any language changes them.
import { randomUUID } from 'node:crypto'
import type { Socket } from 'node:net'
import pg from 'pg'
import fastJsonPatch from 'fast-json-patch'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import {
  createJob,
  newTenant,
  startTestService,
  tokenFor,
  type TestService,
} from '../helpers/service.js'
import { openWs, refusedUpgrade, until, type WsClient, type WsMessage } from '../helpers/ws.js'

type Doc = Record<string, unknown>

let database: TestDatabase
let service: TestService
let sql: pg.Client
const clients: WsClient[] = []

beforeAll(async () => {
  database = await createTestDatabase()
  service = await startTestService(database.url, {
    WS_MAX_BAD_MESSAGES: '3',
    WS_MAX_SUBSCRIPTIONS: '3',
  })
  sql = new pg.Client({ connectionString: database.url })
  await sql.connect()
})
afterEach(() => {
  for (const c of clients.splice(0)) c.socket.terminate()
})
afterAll(async () => {
  await sql?.end()
  await service?.close()
  await database?.drop()
})

function wsUrl(path: string, token?: string): string {
  const url = new URL(path, service.url.replace(/^http/, 'ws'))
  if (token !== undefined) url.searchParams.set('token', token)
  return url.toString()
}

async function connect(path: string, token?: string, options = {}): Promise<WsClient> {
  const client = await openWs(wsUrl(path, token), options)
  clients.push(client)
  return client
}

function applyPatch(doc: Doc, message: WsMessage): Doc {
  expect(message.patch?.[0]).toEqual({ op: 'test', path: '/version', value: doc.version })
  const next = fastJsonPatch.applyPatch(structuredClone(doc), message.patch as never, true, false)
    .newDocument as Doc
  expect(next.version).toBe(message.version)
  return next
}

async function getJob(id: string, token: string): Promise<Doc> {
  const res = await service.fetch(`/v1/jobs/${id}`, { token })
  expect(res.status).toBe(200)
  return (await res.json()) as Doc
}

/** Subscribes to a job of our own and waits for its snapshot: every earlier message was handled. */
async function sync(client: WsClient, job: string): Promise<WsMessage> {
  client.send({ op: 'subscribe', jobs: [job] })
  return client.nextFor(job, 'snapshot')
}

describe('GET /v1/ws', () => {
  it('streams a snapshot, patches and an end for each of two subscribed jobs', async () => {
    const t = newTenant()
    const a = await createJob(service, t.admin)
    const b = await createJob(service, t.admin)
    const ws = await connect('/v1/ws', t.admin)
    ws.send({ op: 'subscribe', jobs: [a.id, b.id] })
    const snapA = await ws.nextFor(a.id, 'snapshot')
    const snapB = await ws.nextFor(b.id, 'snapshot')
    expect(snapA).toMatchObject({ job: a.id, version: 1, doc: { id: a.id, status: 'queued' } })
    expect(snapB).toMatchObject({ job: b.id, version: 1, doc: { id: b.id, status: 'queued' } })
    let docA = snapA.doc!
    let docB = snapB.doc!

    await sql.query(`UPDATE job_queue SET status = 'running', progress = 30 WHERE id = $1`, [a.id])
    await sql.query(`UPDATE job_queue SET status = 'running', step = 'b1' WHERE id = $1`, [b.id])
    docA = applyPatch(docA, await ws.nextFor(a.id, 'patch'))
    docB = applyPatch(docB, await ws.nextFor(b.id, 'patch'))
    expect(docA).toMatchObject({ status: 'running', progress: 30, version: 2 })
    expect(docB).toMatchObject({ status: 'running', step: 'b1', version: 2 })

    await sql.query(
      `UPDATE job_queue SET status = 'completed', progress = 100, result = '{"n":1}' WHERE id = $1`,
      [a.id],
    )
    await sql.query(
      `UPDATE job_queue SET status = 'failed', error = '{"message":"boom","code":"E1"}' WHERE id = $1`,
      [b.id],
    )
    docA = applyPatch(docA, await ws.nextFor(a.id, 'patch'))
    docB = applyPatch(docB, await ws.nextFor(b.id, 'patch'))
    expect(await ws.nextFor(a.id, 'end')).toEqual({
      type: 'end',
      job: a.id,
      version: 3,
      status: 'completed',
    })
    expect(await ws.nextFor(b.id, 'end')).toEqual({
      type: 'end',
      job: b.id,
      version: 3,
      status: 'failed',
    })
    expect(docA).toEqual(await getJob(a.id, t.admin))
    expect(docB).toEqual(await getJob(b.id, t.admin))
    // The multiplexed socket outlives its jobs: it stays open for more subscriptions.
    expect(ws.socket.readyState).toBe(ws.socket.OPEN)
    expect(ws.messages.filter((m) => m.type === 'error')).toEqual([])
  })

  it('answers a bad or unknown job id with an error and keeps the socket usable', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    const ws = await connect('/v1/ws', t.admin)
    ws.send({ op: 'subscribe', jobs: ['not-a-uuid'] })
    expect(await ws.next('error')).toMatchObject({ type: 'error', job: 'not-a-uuid', status: 400 })
    const missing = randomUUID()
    ws.send({ op: 'subscribe', jobs: [missing] })
    expect(await ws.next('error')).toMatchObject({ type: 'error', job: missing, status: 404 })
    ws.send({ op: 'dance' })
    expect(await ws.next('error')).toMatchObject({ type: 'error', status: 400 })
    expect(await sync(ws, job.id)).toMatchObject({ job: job.id, version: 1 })
    await sql.query(`UPDATE job_queue SET progress = 5 WHERE id = $1`, [job.id])
    expect(await ws.nextFor(job.id, 'patch')).toMatchObject({ version: 2 })
  })

  it('answers the jobs of one message that cannot be subscribed in one error listing them', async () => {
    const t = newTenant()
    const other = newTenant()
    const [own, second] = await Promise.all([1, 2].map(() => createJob(service, t.admin)))
    const foreign = await createJob(service, other.admin)
    const ws = await connect('/v1/ws', t.admin)
    ws.send({ op: 'subscribe', jobs: ['nope', own!.id, foreign.id] })
    await ws.nextFor(own!.id, 'snapshot')
    const error = await ws.next('error')
    expect(error).toMatchObject({ type: 'error', status: 404 })
    expect(error.job).toBeUndefined()
    expect(error.jobs).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ job: 'nope', status: 400 }),
        expect.objectContaining({ job: foreign.id, status: 404 }),
      ]),
    )
    expect(error.jobs).toHaveLength(2)
    await sync(ws, second!.id)
    expect(ws.messages.filter((m) => m.type === 'error')).toHaveLength(1)
  })

  it('sends nothing more about a job unsubscribed right after its subscribe', async () => {
    const t = newTenant()
    const [dropped, kept] = await Promise.all([1, 2].map(() => createJob(service, t.admin)))
    const ws = await connect('/v1/ws', t.admin)
    // Both messages in one TCP segment: the server reads them in one go, and the
    // unsubscribe arrives while the subscribe's read is still in flight.
    const tcp = (ws.socket as unknown as { _socket: Socket })._socket
    tcp.cork()
    ws.send({ op: 'subscribe', jobs: [dropped!.id] })
    ws.send({ op: 'unsubscribe', jobs: [dropped!.id] })
    tcp.uncork()
    await sync(ws, kept!.id)
    await sql.query(`UPDATE job_queue SET progress = 10 WHERE id = $1`, [dropped!.id])
    await sql.query(`UPDATE job_queue SET progress = 20 WHERE id = $1`, [kept!.id])
    await ws.nextFor(kept!.id, 'patch')
    expect(ws.messages.filter((m) => m.job === dropped!.id && m.type === 'patch')).toEqual([])
  })

  it('resumes with `since`: one patch when the history has the version, else a snapshot', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    // A first socket makes the hub keep this job's history while it changes.
    const first = await connect('/v1/ws', t.admin)
    let doc = (await sync(first, job.id)).doc!
    await sql.query(`UPDATE job_queue SET status = 'running', progress = 10 WHERE id = $1`, [
      job.id,
    ])
    doc = applyPatch(doc, await first.nextFor(job.id, 'patch'))
    const atVersion2 = doc
    await sql.query(`UPDATE job_queue SET progress = 60, step = 'sixty' WHERE id = $1`, [job.id])
    doc = applyPatch(doc, await first.nextFor(job.id, 'patch'))

    const second = await connect('/v1/ws', t.admin)
    second.send({ op: 'subscribe', jobs: [job.id], since: { [job.id]: 2 } })
    const resume = await second.nextFor(job.id, 'patch')
    expect(resume.patch?.[0]).toEqual({ op: 'test', path: '/version', value: 2 })
    expect(applyPatch(atVersion2, resume)).toEqual(doc)

    // Already at the newest version: nothing until the next change, which tests version 3.
    const third = await connect('/v1/ws', t.admin)
    third.send({ op: 'subscribe', jobs: [job.id], since: { [job.id]: 3 } })
    const other = await createJob(service, t.admin)
    await sync(third, other.id)
    await sql.query(`UPDATE job_queue SET progress = 70 WHERE id = $1`, [job.id])
    const next = await third.nextFor(job.id, 'patch')
    expect(next.patch?.[0]).toEqual({ op: 'test', path: '/version', value: 3 })
    expect(third.messages.filter((m) => m.job === job.id).map((m) => m.type)).toEqual(['patch'])

    // A job nobody watched has no history in the hub: `since` falls back to a snapshot.
    const cold = await createJob(service, t.admin)
    await sql.query(`UPDATE job_queue SET progress = 1 WHERE id = $1`, [cold.id])
    await sql.query(`UPDATE job_queue SET progress = 2 WHERE id = $1`, [cold.id])
    third.send({ op: 'subscribe', jobs: [cold.id], since: { [cold.id]: 1 } })
    const snapshot = await third.nextFor(cold.id, 'snapshot')
    expect(snapshot).toMatchObject({ version: 3, doc: { progress: 2 } })
    expect(snapshot.doc).toEqual(await getJob(cold.id, t.admin))
  })

  it('delivers a job inserted by direct SQL to a tenant feed subscriber', async () => {
    const t = newTenant()
    const marker = await createJob(service, t.admin)
    const ws = await connect('/v1/ws', t.admin)
    ws.send({ op: 'subscribe', feed: 'tenant' })
    await sync(ws, marker.id)
    const { rows } = await sql.query<{ id: string }>(
      `INSERT INTO job_queue (tenant_id, owner_id, type) VALUES ($1, 'someone', 'sql-insert') RETURNING id`,
      [t.tenantId],
    )
    const id = rows[0]!.id
    const snapshot = await ws.nextFor(id, 'snapshot')
    expect(snapshot).toMatchObject({ job: id, version: 1, doc: { type: 'sql-insert' } })
    await sql.query(`UPDATE job_queue SET status = 'cancelled' WHERE id = $1`, [id])
    const doc = applyPatch(snapshot.doc!, await ws.nextFor(id, 'patch'))
    expect(await ws.nextFor(id, 'end')).toMatchObject({ version: 2, status: 'cancelled' })
    expect(doc).toEqual(await getJob(id, t.admin))

    // Unsubscribed from the feed: a new job no longer arrives (checked against a marker).
    ws.send({ op: 'unsubscribe', feed: 'tenant' })
    await sql.query(
      `INSERT INTO job_queue (tenant_id, owner_id, type) VALUES ($1, 'someone', 'unseen')`,
      [t.tenantId],
    )
    await sql.query(`UPDATE job_queue SET progress = 9 WHERE id = $1`, [marker.id])
    await ws.nextFor(marker.id, 'patch')
    expect(ws.messages.filter((m) => m.doc?.type === 'unseen')).toEqual([])
  })

  it("gives a member's feed only the member's own jobs", async () => {
    const t = newTenant()
    const ws = await connect('/v1/ws', t.alice)
    ws.send({ op: 'subscribe', feed: 'tenant' })
    const marker = await createJob(service, t.alice)
    await sync(ws, marker.id)
    const insert = async (owner: string) =>
      (
        await sql.query<{ id: string }>(
          `INSERT INTO job_queue (tenant_id, owner_id, type) VALUES ($1, $2, 'feed') RETURNING id`,
          [t.tenantId, owner],
        )
      ).rows[0]!.id
    const bobs = await insert('bob')
    const own = await insert('alice')
    await ws.nextFor(own, 'snapshot')
    await sql.query(`UPDATE job_queue SET progress = 1 WHERE id = $1`, [marker.id])
    await ws.nextFor(marker.id, 'patch')
    expect(ws.messages.some((m) => m.job === bobs)).toBe(false)
  })

  it("answers another tenant's job with 404 and never sends anything about it", async () => {
    const mine = newTenant()
    const theirs = newTenant()
    const foreign = await createJob(service, theirs.admin)
    const own = await createJob(service, mine.admin)
    const ws = await connect('/v1/ws', mine.admin)
    ws.send({ op: 'subscribe', feed: 'tenant' })
    ws.send({ op: 'subscribe', jobs: [foreign.id] })
    expect(await ws.next('error')).toMatchObject({ job: foreign.id, status: 404 })
    await sync(ws, own.id)
    await sql.query(`UPDATE job_queue SET status = 'running', progress = 50 WHERE id = $1`, [
      foreign.id,
    ])
    await sql.query(`UPDATE job_queue SET status = 'completed' WHERE id = $1`, [foreign.id])
    await sql.query(
      `INSERT INTO job_queue (tenant_id, owner_id, type) VALUES ($1, 'x', 'foreign-new')`,
      [theirs.tenantId],
    )
    // Two rounds of our own changes: the second is read in a later batch than anything above.
    await sql.query(`UPDATE job_queue SET progress = 1 WHERE id = $1`, [own.id])
    await ws.nextFor(own.id, 'patch')
    await sql.query(`UPDATE job_queue SET progress = 2 WHERE id = $1`, [own.id])
    await ws.nextFor(own.id, 'patch')
    const leaked = ws.messages.filter(
      (m) => m.type !== 'error' && (m.job !== own.id || m.doc?.type === 'foreign-new'),
    )
    expect(leaked).toEqual([])
    expect(JSON.stringify(ws.messages.filter((m) => m.type !== 'error'))).not.toContain(foreign.id)
  })

  it('closes with 1008 after repeated malformed messages', async () => {
    const t = newTenant()
    const ws = await connect('/v1/ws', t.admin)
    ws.send('not json')
    ws.send('{"op":')
    ws.send({ op: 'subscribe', jobs: 'nope' })
    const errors = await Promise.all([ws.next('error'), ws.next('error'), ws.next('error')])
    for (const e of errors) expect(e).toMatchObject({ status: 400 })
    expect((await ws.closed).code).toBe(1008)
  })

  it('closes with 1009 when a message is larger than WS_MAX_MESSAGE_BYTES', async () => {
    const t = newTenant()
    const ws = await connect('/v1/ws', t.admin)
    ws.send({ op: 'subscribe', jobs: Array.from({ length: 2000 }, () => randomUUID()) })
    expect((await ws.closed).code).toBe(1009)
  })

  it('refuses a subscription beyond WS_MAX_SUBSCRIPTIONS with error 429', async () => {
    const t = newTenant()
    const jobs = await Promise.all([1, 2, 3, 4].map(() => createJob(service, t.admin)))
    const ws = await connect('/v1/ws', t.admin)
    // Three in one message, one more in the next: the cap counts both.
    ws.send({ op: 'subscribe', jobs: jobs.slice(0, 3).map((j) => j.id) })
    ws.send({ op: 'subscribe', jobs: [jobs[3]!.id] })
    for (const j of jobs.slice(0, 3)) await ws.nextFor(j.id, 'snapshot')
    expect(await ws.next('error')).toMatchObject({ job: jobs[3]!.id, status: 429 })

    // More jobs in one message than a connection may watch: one error, nothing subscribed.
    const again = await connect('/v1/ws', t.admin)
    again.send({ op: 'subscribe', jobs: jobs.map((j) => j.id) })
    expect(await again.next('error')).toMatchObject({
      status: 400,
      detail: expect.stringContaining('at most 3 jobs per message'),
    })
    again.send({ op: 'subscribe', jobs: jobs.slice(0, 3).map((j) => j.id) })
    for (const j of jobs.slice(0, 3)) await again.nextFor(j.id, 'snapshot')
    expect(again.messages.filter((m) => m.type === 'snapshot')).toHaveLength(3)

    // Unsubscribing frees a slot.
    again.send({ op: 'unsubscribe', jobs: [jobs[0]!.id] })
    again.send({ op: 'subscribe', jobs: [jobs[3]!.id] })
    await again.nextFor(jobs[3]!.id, 'snapshot')
    expect(again.messages.filter((m) => m.type === 'error')).toHaveLength(1)
  })

  it('takes the token from the Authorization header', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    const ws = await connect('/v1/ws', undefined, {
      headers: { authorization: `Bearer ${t.admin}` },
    })
    expect(await sync(ws, job.id)).toMatchObject({ version: 1 })
  })

  it('refuses an upgrade without a valid token with HTTP 401', async () => {
    const none = await refusedUpgrade(wsUrl('/v1/ws'))
    expect(none.status).toBe(401)
    expect(none.headers['content-type']).toBe('application/problem+json')
    expect(JSON.parse(none.body)).toMatchObject({ status: 401 })
    expect((await refusedUpgrade(wsUrl('/v1/ws', 'garbage'))).status).toBe(401)
    const wrongKey = tokenFor({}, {}, 'another-secret-another-secret-0123456789')
    expect((await refusedUpgrade(wsUrl('/v1/ws', wrongKey))).status).toBe(401)
    const expired = tokenFor({}, { expiresIn: -60 })
    expect((await refusedUpgrade(wsUrl('/v1/ws', expired))).status).toBe(401)
    expect(
      (await refusedUpgrade(wsUrl('/v1/ws'), { headers: { authorization: 'Bearer nope' } })).status,
    ).toBe(401)
    expect((await refusedUpgrade(wsUrl(`/v1/jobs/${randomUUID()}`))).status).toBe(401)
    expect((await refusedUpgrade(wsUrl('/v1/nowhere', tokenFor()))).status).toBe(404)
  })
})

describe('GET /v1/jobs/:id with a WebSocket upgrade', () => {
  it('streams that one job and closes with 1000 after its end', async () => {
    const t = newTenant()
    const job = await createJob(service, t.alice)
    const ws = await connect(`/v1/jobs/${job.id}`, t.alice)
    let doc = (await ws.nextFor(job.id, 'snapshot')).doc!
    await sql.query(`UPDATE job_queue SET status = 'running', progress = 20 WHERE id = $1`, [
      job.id,
    ])
    doc = applyPatch(doc, await ws.nextFor(job.id, 'patch'))
    await sql.query(`UPDATE job_queue SET status = 'completed', result = '[1]' WHERE id = $1`, [
      job.id,
    ])
    doc = applyPatch(doc, await ws.nextFor(job.id, 'patch'))
    expect(await ws.nextFor(job.id, 'end')).toMatchObject({ status: 'completed', version: 3 })
    expect((await ws.closed).code).toBe(1000)
    expect(doc).toEqual(await getJob(job.id, t.alice))
  })

  it('sends a finished job as a snapshot and an end, then closes', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    await sql.query(`UPDATE job_queue SET status = 'cancelled' WHERE id = $1`, [job.id])
    const ws = await connect(`/v1/jobs/${job.id}`, undefined, {
      headers: { authorization: `Bearer ${t.admin}` },
    })
    expect(await ws.nextFor(job.id, 'snapshot')).toMatchObject({ doc: { status: 'cancelled' } })
    await ws.nextFor(job.id, 'end')
    expect((await ws.closed).code).toBe(1000)
  })

  it("answers another member's job with error 404 and closes", async () => {
    const t = newTenant()
    const job = await createJob(service, t.bob)
    const ws = await connect(`/v1/jobs/${job.id}`, t.alice)
    expect(await ws.next('error')).toMatchObject({ job: job.id, status: 404 })
    await ws.closed
    expect(ws.messages.map((m) => m.type)).toEqual(['error'])
  })

  it('refuses a malformed job id with HTTP 400', async () => {
    const t = newTenant()
    expect((await refusedUpgrade(wsUrl('/v1/jobs/not-a-uuid', t.admin))).status).toBe(400)
  })
})

describe('dead peers', () => {
  it('drops a peer that stops answering pings and frees its watches', async () => {
    const pinging = await startTestService(database.url, { WS_PING_INTERVAL_MS: '1000' })
    try {
      const t = newTenant()
      const dead = await createJob(service, t.admin)
      const alive = await createJob(service, t.admin)
      const url = (id: string) =>
        `${pinging.url.replace(/^http/, 'ws')}/v1/jobs/${id}?token=${t.admin}`
      const silent = await openWs(url(dead.id), { autoPong: false })
      const healthy = await openWs(url(alive.id))
      clients.push(silent, healthy)
      await silent.nextFor(dead.id, 'snapshot')
      await healthy.nextFor(alive.id, 'snapshot')
      expect(pinging.registry.size).toBe(2)
      expect(pinging.hub.watchedJobs).toBe(2)

      // First tick pings, the second finds no pong: ~2 intervals.
      await until(() => pinging.registry.size === 1, 'the silent peer to be dropped', 5000)
      expect(pinging.hub.watchedJobs).toBe(1)
      expect((await silent.closed).code).toBe(1006)
      expect(healthy.socket.readyState).toBe(healthy.socket.OPEN)
      await sql.query(`UPDATE job_queue SET progress = 3 WHERE id = $1`, [alive.id])
      await healthy.nextFor(alive.id, 'patch')

      healthy.close()
      await until(
        () => pinging.registry.size === 0 && pinging.hub.watchedJobs === 0,
        'every watch to be freed',
      )
    } finally {
      await pinging.close()
    }
  })
})
