// HEAD on a stream route (what `curl -I` sends) is authorised like the GET and answered at
// once with the headers the GET would get, and no stream: it holds no stream slot, parks
// nothing, and leaves nothing in the hub.
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import { createJob, newTenant, startTestService, type TestService } from '../helpers/service.js'
import { openSse } from '../helpers/sse.js'

let database: TestDatabase
let service: TestService

beforeAll(async () => {
  database = await createTestDatabase()
  service = await startTestService(database.url, { MAX_STREAMS_PER_USER: '2' })
})
afterAll(async () => {
  await service?.close()
  await database?.drop()
})

/** A HEAD that must be answered and finished: a stream left open fails it after 5 s. */
async function head(path: string, token: string, headers: Record<string, string> = {}) {
  const res = await service.fetch(path, {
    method: 'HEAD',
    token,
    headers,
    signal: AbortSignal.timeout(5000),
  })
  expect(await res.text()).toBe('')
  return res
}

describe('HEAD on stream routes', () => {
  it('answers every SSE route with its headers, at once, and opens nothing', async () => {
    const t = newTenant()
    const job = await createJob(service, t.alice)
    const paths = [
      [`/v1/jobs/${job.id}/events`, {}],
      [`/v1/jobs/${job.id}?stream=true`, {}],
      [`/v1/jobs/${job.id}`, { accept: 'text/event-stream' }],
      [`/v1/events?jobs=${job.id}`, {}],
    ] as const
    // More HEADs than the user's stream cap: none of them takes a slot.
    for (let round = 0; round < 3; round++) {
      for (const [path, headers] of paths) {
        const res = await head(path, t.alice, headers)
        expect(res.status).toBe(200)
        expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8')
        expect(res.headers.get('cache-control')).toBe('no-cache, no-transform')
        expect(res.headers.get('x-accel-buffering')).toBe('no')
      }
    }
    const feed = await head('/v1/events', t.admin)
    expect(feed.status).toBe(200)
    expect(feed.headers.get('content-type')).toBe('text/event-stream; charset=utf-8')
    expect(service.registry.size).toBe(0)
    expect(service.hub.watchedJobs).toBe(0)
    // The cap is untouched: both of the user's streams still open.
    const streams = await Promise.all(
      [1, 2].map(() =>
        openSse(`${service.url}/v1/jobs/${job.id}/events`, {
          headers: { authorization: `Bearer ${t.alice}` },
        }),
      ),
    )
    try {
      expect(streams.map((s) => s.status)).toEqual([200, 200])
    } finally {
      for (const s of streams) s.close()
    }
  })

  it('answers a long-poll HEAD at once with the document headers, never parking', async () => {
    const t = newTenant()
    const job = await createJob(service, t.alice)
    const res = await head(`/v1/jobs/${job.id}/wait?timeout=30`, t.alice)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8')
    expect(res.headers.get('etag')).toBe(`"${job.version}"`)
    expect(res.headers.get('jobwire-timed-out')).toBe('true')
    expect(service.registry.countByKind('longpoll')).toBe(0)
  })

  it('gives a HEAD the status the GET would get: 401, 400, 404', async () => {
    const t = newTenant()
    const job = await createJob(service, t.alice)
    const other = newTenant()
    for (const path of [`/v1/jobs/${job.id}/events`, `/v1/events?jobs=${job.id}`]) {
      const res = await head(path, other.admin)
      expect(res.status).toBe(404)
      expect(res.headers.get('content-type')).toBe('application/problem+json')
    }
    expect((await head(`/v1/jobs/${job.id}/wait`, t.bob)).status).toBe(404)
    expect((await head('/v1/jobs/not-a-uuid/events', t.alice)).status).toBe(400)
    expect((await head(`/v1/jobs/${job.id}/events`, 'garbage')).status).toBe(401)
    expect(service.registry.size).toBe(0)
  })
})
