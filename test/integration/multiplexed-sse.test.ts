// `GET /v1/events?jobs=a,b,…`: one SSE stream for many jobs. Every event's data names its
// job and version; the `id:` restores every job's position through Last-Event-ID.
import { randomUUID } from 'node:crypto'
import pg from 'pg'
import fastJsonPatch from 'fast-json-patch'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import { createJob, newTenant, startTestService, type TestService } from '../helpers/service.js'
import { openSse, type SseClient, type SseEvent } from '../helpers/sse.js'
import { until } from '../helpers/ws.js'

type Doc = Record<string, unknown>
interface MuxData {
  type: string
  job: string
  version: number
  doc?: Doc
  patch?: fastJsonPatch.Operation[]
  status?: string | number
}

let database: TestDatabase
let service: TestService
let sql: pg.Client
const streams: SseClient[] = []

beforeAll(async () => {
  database = await createTestDatabase()
  service = await startTestService(database.url)
  sql = new pg.Client({ connectionString: database.url })
  await sql.connect()
})
afterEach(async () => {
  for (const s of streams.splice(0)) s.close()
  await until(() => service.registry.size === 0, 'every stream to close')
})
afterAll(async () => {
  await sql?.end()
  await service?.close()
  await database?.drop()
})

async function open(
  jobs: string[] | undefined,
  token: string,
  headers: Record<string, string> = {},
): Promise<SseClient> {
  const query = jobs === undefined ? '' : `?jobs=${jobs.join(',')}`
  const stream = await openSse(`${service.url}/v1/events${query}`, {
    headers: { authorization: `Bearer ${token}`, ...headers },
  })
  streams.push(stream)
  return stream
}

/** The next event of `type` for `job`, without consuming events of other jobs. */
async function nextFor(
  stream: SseClient,
  job: string,
  type: string,
  timeoutMs = 5000,
): Promise<SseEvent & { body: MuxData }> {
  const deadline = Date.now() + timeoutMs
  const seen = new Set<SseEvent>(taken.get(stream))
  taken.set(stream, seen)
  for (;;) {
    const found = stream.events.find(
      (e) => !seen.has(e) && e.event === type && e.json<MuxData>().job === job,
    )
    if (found) {
      seen.add(found)
      return Object.assign(found, { body: found.json<MuxData>() })
    }
    if (Date.now() > deadline) {
      throw new Error(
        `no ${type} for ${job}; got ${stream.events.map((e) => `${e.event}:${e.data.slice(0, 60)}`).join(' | ')}`,
      )
    }
    await stream.next(undefined, Math.max(1, deadline - Date.now())).catch(() => undefined)
  }
}
const taken = new WeakMap<SseClient, Set<SseEvent>>()

/** Applies every event of `job` in arrival order to `doc` (snapshots replace it). */
function replay(stream: SseClient, job: string, doc?: Doc): Doc | undefined {
  for (const e of stream.events) {
    if (e.event !== 'snapshot' && e.event !== 'patch') continue
    const body = e.json<MuxData>()
    if (body.job !== job) continue
    if (body.type === 'snapshot') doc = body.doc
    else {
      expect(body.patch?.[0]).toEqual({ op: 'test', path: '/version', value: doc?.version })
      doc = fastJsonPatch.applyPatch(structuredClone(doc), body.patch!, true, false).newDocument
    }
    expect(doc?.version).toBe(body.version)
  }
  return doc
}

async function getJob(id: string, token: string): Promise<Doc> {
  const res = await service.fetch(`/v1/jobs/${id}`, { token })
  return (await res.json()) as Doc
}

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms)
    }),
  ])
}

function lastId(stream: SseClient): string {
  const ids = stream.events.map((e) => e.id).filter((id) => id !== undefined)
  return ids[ids.length - 1]!
}

it('streams snapshots and patches for several jobs, each naming its job and version', async () => {
  const t = newTenant()
  const jobs = await Promise.all([1, 2, 3].map(() => createJob(service, t.admin)))
  const stream = await open(
    jobs.map((j) => j.id),
    t.admin,
  )
  expect(stream.status).toBe(200)
  expect(stream.headers.get('content-type')).toMatch(/^text\/event-stream/)
  for (const j of jobs) {
    const snapshot = await nextFor(stream, j.id, 'snapshot')
    expect(snapshot.body).toMatchObject({ type: 'snapshot', job: j.id, version: 1 })
    expect(snapshot.id).toMatch(/^j\./)
  }
  // After the snapshots, the id holds every job's position.
  expect(
    lastId(stream)
      .slice(2)
      .split(',')
      .sort()
      .map((p) => p.split(':')),
  ).toEqual(
    jobs
      .map((j) => j.id.replaceAll('-', ''))
      .sort()
      .map((hex) => [hex, '1']),
  )
  for (const [i, j] of jobs.entries()) {
    await sql.query(`UPDATE job_queue SET status = 'running', progress = $2 WHERE id = $1`, [
      j.id,
      10 * (i + 1),
    ])
  }
  for (const j of jobs) {
    const patch = await nextFor(stream, j.id, 'patch')
    expect(patch.body).toMatchObject({ type: 'patch', job: j.id, version: 2 })
  }
  for (const j of jobs) expect(replay(stream, j.id)).toEqual(await getJob(j.id, t.admin))
})

it('resumes every job from Last-Event-ID after a disconnect, and ends when all ended', async () => {
  const t = newTenant()
  const [a, b, c] = await Promise.all([1, 2, 3].map(() => createJob(service, t.admin)))
  const ids = [a!.id, b!.id, c!.id]
  const first = await open(ids, t.admin)
  for (const id of ids) await nextFor(first, id, 'snapshot')
  await sql.query(`UPDATE job_queue SET status = 'running' WHERE id = $1`, [a!.id])
  await nextFor(first, a!.id, 'patch')
  const docs = new Map(ids.map((id) => [id, replay(first, id)!]))
  const resumeId = lastId(first)
  first.close()
  await until(() => service.registry.size === 0, 'the first stream to close')

  // Changed while away: a once, b twice; c unchanged.
  await sql.query(`UPDATE job_queue SET progress = 40, step = 'away' WHERE id = $1`, [a!.id])
  await sql.query(`UPDATE job_queue SET status = 'running', progress = 5 WHERE id = $1`, [b!.id])
  await sql.query(`UPDATE job_queue SET progress = 15 WHERE id = $1`, [b!.id])

  const second = await open(ids, t.admin, { 'last-event-id': resumeId })
  const patchA = await nextFor(second, a!.id, 'patch')
  const patchB = await nextFor(second, b!.id, 'patch')
  expect(patchA.body.patch?.[0]).toEqual({ op: 'test', path: '/version', value: 2 })
  expect(patchB.body.patch?.[0]).toEqual({ op: 'test', path: '/version', value: 1 })
  for (const id of ids) expect(replay(second, id, docs.get(id))).toEqual(await getJob(id, t.admin))
  // One patch each, no snapshot; nothing at all for the unchanged job.
  expect(second.events.map((e) => e.event)).toEqual(['patch', 'patch'])

  // The stream drops each job at its end and closes after the last one.
  await sql.query(`UPDATE job_queue SET status = 'completed' WHERE id = $1`, [a!.id])
  await nextFor(second, a!.id, 'end')
  await sql.query(
    `UPDATE job_queue SET status = 'failed', error = '{"message":"x"}' WHERE id = $1`,
    [b!.id],
  )
  await sql.query(`UPDATE job_queue SET status = 'cancelled' WHERE id = $1`, [c!.id])
  expect((await nextFor(second, b!.id, 'end')).body).toMatchObject({ status: 'failed' })
  expect((await nextFor(second, c!.id, 'end')).body).toMatchObject({ status: 'cancelled' })
  await within(second.closed, 5000, 'the stream to close')
  // The per-job ends come first; the stream's own end, which names no job, comes last.
  const last = second.events[second.events.length - 1]!
  expect(last.event).toBe('end')
  expect(last.json()).toEqual({ type: 'end', reason: 'all jobs ended' })
  for (const id of ids) {
    expect(replay(second, id, docs.get(id))).toEqual(await getJob(id, t.admin))
  }
  await until(() => service.hub.watchedJobs === 0, 'the hub to drop the jobs')

  // The last id still names every ended job at its final version: reconnecting with it
  // gets 204, which tells EventSource to stop.
  const again = await service.fetch(`/v1/events?jobs=${ids.join(',')}`, {
    token: t.admin,
    headers: { 'last-event-id': lastId(second) },
  })
  expect(again.status).toBe(204)
  // Without it, the client is told each job's final state and that it ended.
  const fresh = await open(ids, t.admin)
  await within(fresh.closed, 5000, 'the fresh stream to close')
  for (const id of ids) expect(replay(fresh, id)).toEqual(await getJob(id, t.admin))
  expect(fresh.events.filter((e) => e.event === 'end')).toHaveLength(4)
})

it('lists jobs it cannot watch in an initial `unavailable` event, each with its status', async () => {
  const t = newTenant()
  const other = newTenant()
  const own = await createJob(service, t.alice)
  const foreign = await createJob(service, other.admin)
  const bobs = await createJob(service, t.bob)
  const stream = await open([own.id, foreign.id, bobs.id], t.alice)
  expect(stream.status).toBe(200)
  const unavailable = await stream.next()
  // Never `error`: EventSource hands an event named error to onerror.
  expect(unavailable.event).toBe('unavailable')
  const body = unavailable.json<{ type: string; jobs: Array<{ job: string; status: number }> }>()
  expect(body.type).toBe('unavailable')
  expect(body.jobs).toEqual(
    expect.arrayContaining([
      expect.objectContaining({ job: foreign.id, status: 404 }),
      expect.objectContaining({ job: bobs.id, status: 404 }),
    ]),
  )
  expect(body.jobs).toHaveLength(2)
  await nextFor(stream, own.id, 'snapshot')
  await sql.query(`UPDATE job_queue SET progress = 50 WHERE id = ANY($1)`, [[foreign.id, bobs.id]])
  await sql.query(`UPDATE job_queue SET progress = 1 WHERE id = $1`, [own.id])
  await nextFor(stream, own.id, 'patch')
  await sql.query(`UPDATE job_queue SET progress = 2 WHERE id = $1`, [own.id])
  await nextFor(stream, own.id, 'patch')
  const about = stream.events
    .filter((e) => e.event !== 'unavailable')
    .map((e) => e.json<MuxData>().job)
  expect(new Set(about)).toEqual(new Set([own.id]))
})

it('carries each job its own status: 403 for a job a watch token does not open', async () => {
  const t = newTenant()
  const shared = await createJob(service, t.alice)
  const other = await createJob(service, t.alice)
  const link = shared.watch_token as string
  const stream = await open([shared.id, other.id], link)
  expect(stream.status).toBe(200)
  const unavailable = await stream.next()
  expect(unavailable.event).toBe('unavailable')
  expect(unavailable.json()).toMatchObject({
    type: 'unavailable',
    status: 403,
    jobs: [{ job: other.id, status: 403 }],
  })
  await nextFor(stream, shared.id, 'snapshot')
})

it('answers 400 before any stream byte for a malformed id anywhere in jobs=', async () => {
  const t = newTenant()
  const own = await createJob(service, t.alice)
  for (const jobs of [
    [own.id, 'nope'],
    ['nope', own.id],
    [own.id, `${own.id}x`],
  ]) {
    const res = await fetch(`${service.url}/v1/events?jobs=${jobs.join(',')}`, {
      headers: { authorization: `Bearer ${t.alice}` },
    })
    expect(res.status).toBe(400)
    expect(res.headers.get('content-type')).toBe('application/problem+json')
    const problem = (await res.json()) as { detail: string; invalid_params: unknown[] }
    expect(problem.detail).toContain('not a job id')
    expect(problem.invalid_params).toEqual([
      { name: 'query.jobs', reason: expect.stringContaining('not a job id') as unknown },
    ])
  }
})

it('rejects unknown query parameters with 400 and ignores the cache-buster `_`', async () => {
  const t = newTenant()
  const own = await createJob(service, t.alice)
  const res = await fetch(`${service.url}/v1/events?jobs=${own.id}&lastEventID=x`, {
    headers: { authorization: `Bearer ${t.alice}` },
  })
  expect(res.status).toBe(400)
  expect(((await res.json()) as { detail: string }).detail).toBe(
    'query: unknown parameter(s): lastEventID',
  )
  const busted = await openSse(`${service.url}/v1/events?jobs=${own.id}&_=1733150000000`, {
    headers: { authorization: `Bearer ${t.alice}` },
  })
  streams.push(busted)
  expect(busted.status).toBe(200)
  await nextFor(busted, own.id, 'snapshot')
})

it('answers 404 when no listed job is visible and 400 when none is even an id', async () => {
  const t = newTenant()
  const other = newTenant()
  const foreign = await createJob(service, other.admin)
  const notFound = await service.fetch(`/v1/events?jobs=${foreign.id},${randomUUID()}`, {
    token: t.admin,
  })
  expect(notFound.status).toBe(404)
  expect(notFound.headers.get('content-type')).toBe('application/problem+json')
  const malformed = await service.fetch('/v1/events?jobs=a,b', { token: t.admin })
  expect(malformed.status).toBe(400)
  expect(malformed.headers.get('content-type')).toBe('application/problem+json')
  expect(service.registry.size).toBe(0)
})

it('authorises every job with one read, and leaves no watcher behind when it fails', async () => {
  const t = newTenant()
  const jobs = await Promise.all([1, 2, 3].map(() => createJob(service, t.admin)))
  const unknown = Array.from({ length: 40 }, () => randomUUID())
  const ids = [...jobs.map((j) => j.id), ...unknown]
  // The authorising read waits behind a lock: however many jobs, one read waits, and it is
  // cancelled.
  const locker = new pg.Client({ connectionString: database.url })
  await locker.connect()
  const readers = async () =>
    (
      await sql.query<{ pid: number }>(
        `SELECT pid FROM pg_stat_activity
          WHERE datname = current_database() AND wait_event_type = 'Lock'
            AND query LIKE '%jobwire_read_job%'`,
      )
    ).rows.map((r) => r.pid)
  try {
    await locker.query('BEGIN')
    await locker.query('LOCK TABLE job_queue IN ACCESS EXCLUSIVE MODE')
    const answer = service.fetch(`/v1/events?jobs=${ids.join(',')}`, { token: t.admin })
    let waiting: number[] = []
    const deadline = Date.now() + 5000
    while (waiting.length === 0) {
      if (Date.now() > deadline) throw new Error('the read never waited for the lock')
      waiting = await readers()
    }
    // One read per job would now show as many waiting reads as the pool has connections.
    for (let settled = 0; settled < 5; settled++) {
      await new Promise((resolve) => setTimeout(resolve, 20))
      expect(await readers()).toEqual(waiting)
    }
    expect(waiting).toHaveLength(1)
    await sql.query('SELECT pg_cancel_backend($1)', [waiting[0]])
    await locker.query('COMMIT')
    const res = await answer
    // The cancelled read (SQLSTATE 57014) is worth a retry.
    expect(res.status).toBe(503)
    expect(res.headers.get('retry-after')).toBe('1')
    expect(res.headers.get('content-type')).toBe('application/problem+json')
  } finally {
    await locker.end()
  }
  await until(() => service.hub.watchedJobs === 0, 'the hub to drop every job')
  expect(service.registry.size).toBe(0)
})

it("opens a watch token's own job and refuses any other with 403", async () => {
  const t = newTenant()
  const a = await createJob(service, t.alice)
  const b = await createJob(service, t.alice)
  const token = a.watch_token as string
  const ok = await openSse(`${service.url}/v1/events?jobs=${a.id}&token=${token}`)
  streams.push(ok)
  expect(ok.status).toBe(200)
  expect((await nextFor(ok, a.id, 'snapshot')).body.doc).toEqual(await getJob(a.id, t.alice))
  const other = await service.fetch(`/v1/events?jobs=${b.id}`, { token })
  expect(other.status).toBe(403)
  expect(other.headers.get('content-type')).toBe('application/problem+json')
})

it('gives a single-job stream and a multiplexed stream on the same job each their own frames', async () => {
  const t = newTenant()
  const job = await createJob(service, t.admin)
  const auth = { headers: { authorization: `Bearer ${t.admin}` } }
  // Both kinds of stream, in both orders, so that neither can reuse the other's cached bytes.
  const single = await openSse(`${service.url}/v1/jobs/${job.id}/events`, auth)
  const mux = await openSse(`${service.url}/v1/events?jobs=${job.id}`, auth)
  const single2 = await openSse(`${service.url}/v1/jobs/${job.id}/events`, auth)
  try {
    for (const s of [single, mux, single2]) await s.next('snapshot')
    await sql.query(`UPDATE job_queue SET progress = 42 WHERE id = $1`, [job.id])
    for (const s of [single, single2]) {
      const patch = await s.next('patch')
      expect(patch.id).toBe('2')
      expect(Array.isArray(patch.json())).toBe(true)
    }
    const muxPatch = await mux.next('patch')
    expect(muxPatch.id).toMatch(/^j\./)
    expect(muxPatch.json()).toMatchObject({ type: 'patch', job: job.id, version: 2 })
  } finally {
    for (const s of [single, mux, single2]) s.close()
  }
})
