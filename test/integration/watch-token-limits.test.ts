// Traffic through a share link (a watch token) has its own buckets, per job: its requests and
// its streams never count against the owner's (or the tenant's) limits, so a link posted
// somewhere busy cannot lock its owner out; and the link itself is limited.
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import { createJob, newTenant, startTestService, type TestService } from '../helpers/service.js'
import { openSse, type SseClient } from '../helpers/sse.js'
import { openWs, refusedUpgrade, until } from '../helpers/ws.js'

let database: TestDatabase
/** Small request limits; stream caps off. */
let limited: TestService
/** Small stream caps; request limits at their defaults. */
let capped: TestService
const open: Array<() => void> = []

beforeAll(async () => {
  database = await createTestDatabase()
  ;[limited, capped] = await Promise.all([
    startTestService(database.url, {
      RATE_LIMIT_PER_USER: '6',
      RATE_LIMIT_PER_TENANT: '8',
      RATE_LIMIT_PER_WATCH_JOB: '4',
    }),
    startTestService(database.url, {
      MAX_STREAMS_PER_USER: '2',
      MAX_STREAMS_PER_TENANT: '3',
      MAX_STREAMS_PER_WATCH_JOB: '3',
    }),
  ])
})
afterEach(async () => {
  for (const close of open.splice(0)) close()
  await until(() => capped.registry.size === 0, 'every stream to close')
})
afterAll(async () => {
  await Promise.all([limited?.close(), capped?.close()])
  await database?.drop()
})

async function sharedJob(
  service: TestService,
): Promise<{ id: string; link: string; owner: string; admin: string }> {
  const t = newTenant()
  const job = await createJob(service, t.alice)
  return { id: job.id, link: job.watch_token as string, owner: t.alice, admin: t.admin }
}

async function sse(path: string, token: string): Promise<SseClient> {
  const stream = await openSse(`${capped.url}${path}`, {
    headers: { authorization: `Bearer ${token}` },
  })
  open.push(() => stream.close())
  return stream
}

describe('watch-token buckets', () => {
  it("limits a link's requests per job, without touching its owner's or tenant's", async () => {
    const job = await sharedJob(limited)
    for (let i = 1; i <= 4; i++) {
      const res = await limited.fetch(`/v1/jobs/${job.id}`, { token: job.link })
      expect(res.status).toBe(200)
      expect(res.headers.get('ratelimit-limit')).toBe('4')
      expect(res.headers.get('ratelimit-remaining')).toBe(String(4 - i))
    }
    const refused = await limited.fetch(`/v1/jobs/${job.id}`, { token: job.link })
    expect(refused.status).toBe(429)
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1)
    expect(await refused.json()).toMatchObject({
      status: 429,
      detail: expect.stringMatching(/this job through watch tokens/),
    })
    // The owner made one request (the create): five left of six, whatever the link did.
    const own = await limited.fetch(`/v1/jobs/${job.id}`, { token: job.owner })
    expect(own.status).toBe(200)
    expect(own.headers.get('ratelimit-remaining')).toBe('4')
    const create = await limited.fetch('/v1/jobs', {
      method: 'POST',
      token: job.owner,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'test' }),
    })
    expect(create.status).toBe(201)
    // Another link of the same tenant has a bucket of its own.
    const other = await sharedJob(limited)
    expect((await limited.fetch(`/v1/jobs/${other.id}`, { token: other.link })).status).toBe(200)
  })

  it("caps a link's streams per job on every transport, leaving the owner's cap alone", async () => {
    const job = await sharedJob(capped)
    const streams = [
      await sse(`/v1/jobs/${job.id}/events`, job.link),
      await sse(`/v1/events?jobs=${job.id}`, job.link),
    ]
    const ws = await openWs(`${capped.url.replace(/^http/, 'ws')}/v1/ws?token=${job.link}`)
    open.push(() => ws.close())
    for (const s of streams) expect(s.status).toBe(200)
    // Three through the link: the fourth is refused, on any transport.
    const fourth = await capped.fetch(`/v1/jobs/${job.id}/events`, { token: job.link })
    expect(fourth.status).toBe(429)
    expect(await fourth.json()).toMatchObject({
      detail: expect.stringMatching(/through watch tokens \(the limit is 3\)/),
    })
    const upgrade = await refusedUpgrade(
      `${capped.url.replace(/^http/, 'ws')}/v1/ws?token=${job.link}`,
    )
    expect(upgrade.status).toBe(429)
    // The owner still has both of its own streams, and the tenant its three.
    const mine = [
      await sse(`/v1/jobs/${job.id}/events`, job.owner),
      await sse(`/v1/events?jobs=${job.id}`, job.owner),
    ]
    for (const s of mine) expect(s.status).toBe(200)
    expect((await sse(`/v1/events`, job.admin)).status).toBe(200)
    // A slot freed through the link opens the next one.
    streams[0]!.close()
    await until(() => capped.registry.size === 5, 'the closed stream to leave')
    expect((await sse(`/v1/jobs/${job.id}/events`, job.link)).status).toBe(200)
  })

  it('counts a parked long-poll through a link against the link', async () => {
    const job = await sharedJob(capped)
    const waits = [1, 2, 3].map(() => {
      const controller = new AbortController()
      open.push(() => controller.abort())
      const pending = capped.fetch(`/v1/jobs/${job.id}/wait?timeout=30`, {
        token: job.link,
        signal: controller.signal,
      })
      pending.catch(() => undefined)
      return pending
    })
    await until(() => capped.registry.countByKind('longpoll') === 3, 'three parked waits')
    const fourth = await capped.fetch(`/v1/jobs/${job.id}/wait?timeout=30`, { token: job.link })
    expect(fourth.status).toBe(429)
    expect(waits).toHaveLength(3)
  })
})
