// Resuming a stream (docs/contract.md §7): Last-Event-ID (header or ?lastEventId=) brings a client
// back to the committed row with one event: a patch while the server still holds the client's
// version, a snapshot once that version left the kept history (JOB_HISTORY_SIZE=2 here), and a
// snapshot, not an error, for garbage. The maximum lifetime closes a stream and the client resumes
// without losing a change.
import fastJsonPatch, { type Operation } from 'fast-json-patch'
import pg from 'pg'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import { createJob, newTenant, startTestService, type TestService } from '../helpers/service.js'
import { openSse, type SseClient, type SseEvent } from '../helpers/sse.js'

type Doc = Record<string, unknown> & { version: number }

let database: TestDatabase
let service: TestService
let sql: pg.Client
const clients: SseClient[] = []

beforeAll(async () => {
  database = await createTestDatabase()
  service = await startTestService(database.url, { JOB_HISTORY_SIZE: '2' })
  sql = new pg.Client({ connectionString: database.url })
  await sql.connect()
})
afterEach(() => {
  for (const client of clients.splice(0)) client.close()
})
afterAll(async () => {
  await sql?.end()
  await service?.close()
  await database?.drop()
})

async function open(svc: TestService, path: string, token: string, lastEventId?: string) {
  const headers: Record<string, string> = { authorization: `Bearer ${token}` }
  if (lastEventId !== undefined) headers['last-event-id'] = lastEventId
  const client = await openSse(svc.url + path, { headers })
  clients.push(client)
  expect(client.status).toBe(200)
  return client
}

async function getJob(svc: TestService, id: string, token: string): Promise<Doc> {
  return (await (await svc.fetch(`/v1/jobs/${id}`, { token })).json()) as Doc
}

async function until(check: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** The client's state after one event: a patch applies (validated), a snapshot replaces. */
function applyEvent(doc: Doc, event: SseEvent): Doc {
  if (event.event === 'snapshot') return event.json<Doc>()
  expect(event.event).toBe('patch')
  const patch = event.json<Operation[]>()
  expect(patch[0]).toEqual({ op: 'test', path: '/version', value: doc.version })
  return fastJsonPatch.applyPatch(doc, patch, true, false).newDocument
}

async function updateTimes(id: string, n: number): Promise<void> {
  for (let i = 0; i < n; i++)
    await sql.query(
      `UPDATE job_queue SET status = 'running', progress = progress + 1, step = $2 WHERE id = $1`,
      [id, `step ${i}`],
    )
}

/** Reads the snapshot, then leaves and waits until the server has let go of the stream. */
async function readSnapshotAndLeave(path: string, token: string): Promise<SseEvent> {
  const first = await open(service, path, token)
  const snapshot = await first.next('snapshot')
  first.close()
  await until(() => service.hub.watchedJobs === 0, 'the server to drop the stream')
  return snapshot
}

/** After catching up, one more change arrives as a patch from the caught-up version. */
async function expectNothingElseQueued(stream: SseClient, id: string, doc: Doc): Promise<void> {
  await sql.query(`UPDATE job_queue SET progress = progress + 1 WHERE id = $1`, [id])
  const next = await stream.next()
  expect(next.event).toBe('patch')
  expect(next.json<Operation[]>()[0]).toEqual({ op: 'test', path: '/version', value: doc.version })
}

describe('resuming with Last-Event-ID', () => {
  it.each([
    ['the Last-Event-ID header', 'header'],
    ['?lastEventId=', 'query'],
  ])('converges with one patch after three missed updates (%s)', async (_name, how) => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    const snapshot = await readSnapshotAndLeave(`/v1/jobs/${job.id}/events`, t.admin)
    const announced = service.hub.stats.notifications
    await updateTimes(job.id, 3)
    // Missed means announced while nobody watched. (A change that reaches the hub after the
    // resuming watch is registered is applied: with EVENT_SOURCE=replication each version
    // then passes through the 2-version history, pushing version 1 out of it.)
    await until(
      () => service.hub.stats.notifications >= announced + 3,
      'the three changes to reach the hub',
    )

    const resumed =
      how === 'header'
        ? await open(service, `/v1/jobs/${job.id}/events`, t.admin, snapshot.id)
        : await open(service, `/v1/jobs/${job.id}/events?lastEventId=${snapshot.id!}`, t.admin)
    const event = await resumed.next()
    // The server kept the client's version (the job's history outlives its last watcher).
    expect(event.event).toBe('patch')
    const doc = applyEvent(snapshot.json<Doc>(), event)
    expect(doc).toEqual(await getJob(service, job.id, t.admin))
    expect(doc.version).toBe(4)
    expect(event.id).toBe('4')
    await expectNothingElseQueued(resumed, job.id, doc)
    expect(resumed.events).toHaveLength(2)
  })

  it('sends only the retry line to a client that is already up to date', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    await updateTimes(job.id, 1)
    const current = await getJob(service, job.id, t.admin)
    const resumed = await open(
      service,
      `/v1/jobs/${job.id}/events`,
      t.admin,
      String(current.version),
    )
    await expectNothingElseQueued(resumed, job.id, current)
    expect(resumed.events).toHaveLength(1)
    expect(resumed.retry).toBeGreaterThan(0)
  })

  it('sends a snapshot when the version is older than the kept history', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    const snapshot = await readSnapshotAndLeave(`/v1/jobs/${job.id}/events`, t.admin)
    // Another client keeps watching, so the server sees every version go by and its
    // history (two documents) moves past version 1.
    const watcher = await open(service, `/v1/jobs/${job.id}/events`, t.admin)
    await watcher.next('snapshot')
    for (let i = 0; i < 5; i++) {
      await updateTimes(job.id, 1)
      await watcher.next('patch')
    }
    const resumed = await open(service, `/v1/jobs/${job.id}/events`, t.admin, snapshot.id)
    const event = await resumed.next()
    expect(event.event).toBe('snapshot')
    expect(event.json()).toEqual(await getJob(service, job.id, t.admin))
    expect(event.id).toBe('6')
  })

  it('sends a patch when the version is still in the kept history', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    const watcher = await open(service, `/v1/jobs/${job.id}/events`, t.admin)
    let doc = (await watcher.next('snapshot')).json<Doc>()
    await updateTimes(job.id, 1)
    doc = applyEvent(doc, await watcher.next('patch'))
    await updateTimes(job.id, 1)
    await watcher.next('patch')
    // History holds versions 2 and 3; a client at version 2 gets one patch.
    const resumed = await open(service, `/v1/jobs/${job.id}/events`, t.admin, String(doc.version))
    const event = await resumed.next()
    expect(event.event).toBe('patch')
    expect(applyEvent(doc, event)).toEqual(await getJob(service, job.id, t.admin))
  })

  it.each(['abc', '-1', '0', '1.5', '1e3', ' ', '99999999999999999999', '4000'])(
    'sends a snapshot, not an error, for Last-Event-ID %j',
    async (garbage) => {
      const t = newTenant()
      const job = await createJob(service, t.admin)
      await updateTimes(job.id, 1)
      const resumed = await open(service, `/v1/jobs/${job.id}/events`, t.admin, garbage)
      const event = await resumed.next()
      expect(event.event).toBe('snapshot')
      expect(event.json()).toEqual(await getJob(service, job.id, t.admin))
    },
  )

  it('gives the typed-events format the events since the resumed version', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    const first = await open(service, `/v1/jobs/${job.id}/events?format=events`, t.admin)
    const connected = await first.next('connected')
    first.close()
    await until(() => service.hub.watchedJobs === 0, 'the server to drop the stream')
    await sql.query(
      `UPDATE job_queue SET status = 'running', progress = 50, step = 'encode' WHERE id = $1`,
      [job.id],
    )
    const resumed = await open(
      service,
      `/v1/jobs/${job.id}/events?format=events`,
      t.admin,
      connected.id,
    )
    await resumed.next('connected')
    expect((await resumed.next('progress-update')).json()).toMatchObject({
      progress: 50,
      currentStep: 'encode',
    })
  })
})

describe('maximum lifetime', () => {
  let shortLived: TestService

  beforeAll(async () => {
    shortLived = await startTestService(database.url, { SSE_MAX_LIFETIME_MS: '2000' })
  })
  afterAll(async () => {
    await shortLived?.close()
  })

  it('closes the stream, and a reconnect with Last-Event-ID resumes without loss', async () => {
    const t = newTenant()
    const job = await createJob(shortLived, t.admin)
    const stream = await open(shortLived, `/v1/jobs/${job.id}/events`, t.admin)
    const openedAt = Date.now()
    let doc = applyEvent({ version: 0 }, await stream.next('snapshot'))
    await updateTimes(job.id, 1)
    const patch = await stream.next('patch')
    doc = applyEvent(doc, patch)
    await stream.closed
    expect(Date.now() - openedAt).toBeGreaterThanOrEqual(1_900)
    expect(stream.events.map((e) => e.event)).toEqual(['snapshot', 'patch'])
    await until(() => shortLived.registry.size === 0, 'the closed stream to be unregistered')

    // Changes made while the client reconnects are not lost.
    await updateTimes(job.id, 2)
    const resumed = await open(shortLived, `/v1/jobs/${job.id}/events`, t.admin, patch.id)
    doc = applyEvent(doc, await resumed.next())
    expect(doc).toEqual(await getJob(shortLived, job.id, t.admin))
    expect(doc.version).toBe(4)
  })
})
