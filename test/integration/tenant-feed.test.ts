// The tenant feed: `GET /v1/events` without `jobs` streams every job the caller may see as
// it is created and as it changes (admins the whole tenant, members their own jobs), and
// resumes from Last-Event-ID by replaying what changed while the client was away.
import pg from 'pg'
import fastJsonPatch from 'fast-json-patch'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import { createJob, newTenant, startTestService, type TestService } from '../helpers/service.js'
import { openSse, type SseClient } from '../helpers/sse.js'
import { until } from '../helpers/ws.js'

type Doc = Record<string, unknown>
interface FeedData {
  type: string
  job: string
  version: number
  doc?: Doc
  patch?: fastJsonPatch.Operation[]
  status?: string
}

let database: TestDatabase
let service: TestService
let pool: pg.Pool
const streams: SseClient[] = []

beforeAll(async () => {
  database = await createTestDatabase()
  service = await startTestService(database.url, { FEED_RESUME_MAX_JOBS: '2' })
  pool = new pg.Pool({ connectionString: database.url, max: 8 })
})
afterEach(async () => {
  for (const s of streams.splice(0)) s.close()
  await until(() => service.registry.size === 0, 'every stream to close')
})
afterAll(async () => {
  await pool?.end()
  await service?.close()
  await database?.drop()
})

async function openFeed(token: string, lastEventId?: string): Promise<SseClient> {
  const stream = await openSse(`${service.url}/v1/events`, {
    headers: {
      authorization: `Bearer ${token}`,
      ...(lastEventId === undefined ? {} : { 'last-event-id': lastEventId }),
    },
  })
  expect(stream.status).toBe(200)
  streams.push(stream)
  return stream
}

function bodies(stream: SseClient): FeedData[] {
  return stream.events.map((e) => e.json<FeedData>())
}

function jobsSeen(stream: SseClient): Set<string> {
  return new Set(bodies(stream).map((b) => b.job))
}

/** Waits until `stream` has an event matching `predicate` (bounded). */
async function waitFor(
  stream: SseClient,
  predicate: (b: FeedData) => boolean,
  what: string,
  timeoutMs = 10_000,
): Promise<FeedData> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const found = bodies(stream).find(predicate)
    if (found) return found
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await stream.next(undefined, Math.max(1, deadline - Date.now())).catch(() => undefined)
  }
}

/** Every job's document as the feed told it (snapshots replace, patches apply). */
function feedState(stream: SseClient): Map<string, Doc> {
  const docs = new Map<string, Doc>()
  for (const b of bodies(stream)) {
    if (b.type === 'snapshot') docs.set(b.job, b.doc!)
    if (b.type === 'patch') {
      const base = docs.get(b.job)!
      expect(b.patch![0]).toEqual({ op: 'test', path: '/version', value: base.version })
      docs.set(
        b.job,
        fastJsonPatch.applyPatch(structuredClone(base), b.patch!, true, false).newDocument,
      )
    }
    if (b.type === 'snapshot' || b.type === 'patch')
      expect(docs.get(b.job)!.version).toBe(b.version)
  }
  return docs
}

async function listAll(token: string): Promise<Doc[]> {
  const res = await service.fetch('/v1/jobs?limit=100', { token })
  expect(res.status).toBe(200)
  return ((await res.json()) as { data: Doc[] }).data
}

it("shows members their own jobs and admins the whole tenant, never another tenant's", async () => {
  const tenants = [newTenant(), newTenant(), newTenant()]
  const members = ['alice', 'bob'] as const
  const feeds = new Map<string, SseClient>()
  for (const [i, t] of tenants.entries()) {
    feeds.set(`${i}:admin`, await openFeed(t.admin))
    for (const m of members) feeds.set(`${i}:${m}`, await openFeed(t[m]))
  }
  expect(service.registry.size).toBe(9)

  // 3 tenants × 2 members × 10 jobs, created through the API and moved by SQL, all at once.
  const owned = new Map<string, string[]>()
  await Promise.all(
    tenants.flatMap((t, i) =>
      members.map(async (m) => {
        const ids = await Promise.all(
          Array.from({ length: 10 }, async (_, n) => {
            const job = await createJob(service, t[m], { type: `storm-${n}` })
            await pool.query(
              `UPDATE job_queue SET status = 'running', progress = $2 WHERE id = $1`,
              [job.id, n * 5],
            )
            await pool.query(
              `UPDATE job_queue SET status = 'completed', progress = 100, result = $2 WHERE id = $1`,
              [job.id, JSON.stringify({ n })],
            )
            return job.id
          }),
        )
        owned.set(`${i}:${m}`, ids)
      }),
    ),
  )
  const expected = new Map<string, Set<string>>()
  for (const i of tenants.keys()) {
    expected.set(`${i}:admin`, new Set([...owned.get(`${i}:alice`)!, ...owned.get(`${i}:bob`)!]))
    for (const m of members) expected.set(`${i}:${m}`, new Set(owned.get(`${i}:${m}`)))
  }
  for (const [key, feed] of feeds) {
    for (const id of expected.get(key)!) {
      await waitFor(feed, (b) => b.type === 'end' && b.job === id, `${key} to see ${id} end`)
    }
  }

  // Two rounds of markers, each member's own: the second is read in a later batch than
  // every change above, so by the time it arrives nothing else can still be on its way.
  const markers = new Map<string, string>()
  for (const [i, t] of tenants.entries()) {
    for (const m of members) {
      const { rows } = await pool.query<{ id: string }>(
        `INSERT INTO job_queue (tenant_id, owner_id, type) VALUES ($1, $2, 'marker') RETURNING id`,
        [t.tenantId, m],
      )
      markers.set(`${i}:${m}`, rows[0]!.id)
      expected.get(`${i}:${m}`)!.add(rows[0]!.id)
      expected.get(`${i}:admin`)!.add(rows[0]!.id)
    }
  }
  for (const [key, feed] of feeds) {
    for (const id of expected.get(key)!) {
      if ([...markers.values()].includes(id))
        await waitFor(feed, (b) => b.job === id, `${key} to see marker ${id}`)
    }
  }
  await pool.query(`UPDATE job_queue SET status = 'cancelled' WHERE id = ANY($1)`, [
    [...markers.values()],
  ])
  for (const [key, feed] of feeds) {
    for (const id of markers.values()) {
      if (expected.get(key)!.has(id))
        await waitFor(feed, (b) => b.type === 'end' && b.job === id, `${key} marker end`)
    }
  }

  for (const [key, feed] of feeds)
    expect([...jobsSeen(feed)].sort()).toEqual([...expected.get(key)!].sort())
  // Every feed converged to the rows as committed.
  for (const [i, t] of tenants.entries()) {
    const rows = new Map((await listAll(t.admin)).map((d) => [d.id as string, d]))
    expect(rows.size).toBe(22)
    for (const who of ['admin', ...members]) {
      const state = feedState(feeds.get(`${i}:${who}`)!)
      for (const [id, doc] of state) expect(doc).toEqual(rows.get(id))
    }
  }
})

it('replays the jobs that changed while the client was away', async () => {
  const t = newTenant()
  const feed = await openFeed(t.admin)
  const a = await createJob(service, t.alice)
  const first = await waitFor(feed, (b) => b.job === a.id, 'the new job')
  expect(first).toMatchObject({ type: 'snapshot', version: 1 })
  const resumeId = feed.events[feed.events.length - 1]!.id!
  expect(resumeId).toMatch(/^f\.[0-9a-z]+$/)
  expect(Math.abs(parseInt(resumeId.slice(2), 36) - Date.now())).toBeLessThan(10_000)
  feed.close()
  await until(() => service.registry.size === 0, 'the feed to close')

  await pool.query(`UPDATE job_queue SET status = 'running', progress = 40 WHERE id = $1`, [a.id])
  const { rows } = await pool.query<{ id: string }>(
    `INSERT INTO job_queue (tenant_id, owner_id, type) VALUES ($1, 'bob', 'while-away') RETURNING id`,
    [t.tenantId],
  )
  const b = rows[0]!.id

  const resumed = await openFeed(t.admin, resumeId)
  await waitFor(resumed, (x) => x.job === a.id && x.version === 2, 'job a at version 2')
  await waitFor(resumed, (x) => x.job === b, 'job b')
  await pool.query(`UPDATE job_queue SET progress = 10 WHERE id = $1`, [b])
  await waitFor(resumed, (x) => x.job === b && x.type === 'patch', 'a live patch for b')
  const rowsNow = new Map((await listAll(t.admin)).map((d) => [d.id as string, d]))
  const state = feedState(resumed)
  expect([...state.keys()].sort()).toEqual([a.id, b].sort())
  for (const [id, doc] of state) expect(doc).toEqual(rowsNow.get(id))

  // A member's replay holds only its own jobs.
  const memberFeed = await openFeed(t.bob, resumeId)
  await waitFor(memberFeed, (x) => x.job === b, "bob's job")
  await pool.query(`UPDATE job_queue SET progress = 11 WHERE id = $1`, [b])
  await waitFor(memberFeed, (x) => x.job === b && x.version === 3, "bob's live patch")
  expect(jobsSeen(memberFeed)).toEqual(new Set([b]))
})

it('sends a reset event when more jobs changed than FEED_RESUME_MAX_JOBS', async () => {
  const t = newTenant()
  const feed = await openFeed(t.admin)
  const seen = await createJob(service, t.admin)
  await waitFor(feed, (b) => b.job === seen.id, 'the first job')
  const resumeId = feed.events[feed.events.length - 1]!.id!
  feed.close()
  await until(() => service.registry.size === 0, 'the feed to close')

  await pool.query(
    `INSERT INTO job_queue (tenant_id, owner_id, type)
     SELECT $1, 'admin-1', 'batch-' || n FROM generate_series(1, 5) AS n`,
    [t.tenantId],
  )
  const resumed = await openFeed(t.admin, resumeId)
  const reset = await resumed.next()
  expect(reset.event).toBe('reset')
  expect(reset.json()).toMatchObject({
    type: 'reset',
    detail: expect.stringContaining('GET /v1/jobs'),
  })
  // The feed goes on live after the reset.
  const later = await createJob(service, t.admin)
  await waitFor(resumed, (b) => b.job === later.id, 'a live job after the reset')
  expect(resumed.events.filter((e) => e.event === 'snapshot')).toHaveLength(1)
})
