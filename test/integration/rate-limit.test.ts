// Request rate limits (per user, per tenant, per IP for failed authentication) and the cap on
// concurrent streams (SSE + WebSocket + parked long-polls, per user and per tenant).
import { randomUUID } from 'node:crypto'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import {
  createJob,
  newTenant,
  startTestService,
  tokenFor,
  type TestService,
} from '../helpers/service.js'
import { openSse, type SseClient } from '../helpers/sse.js'
import { openWs, refusedUpgrade, until, type WsClient } from '../helpers/ws.js'

let database: TestDatabase
/** Small request limits; stream caps off. */
let limited: TestService
/** Small stream caps; request limits at their defaults. */
let capped: TestService

beforeAll(async () => {
  database = await createTestDatabase()
  ;[limited, capped] = await Promise.all([
    startTestService(database.url, {
      RATE_LIMIT_PER_USER: '5',
      RATE_LIMIT_PER_TENANT: '8',
      RATE_LIMIT_PER_IP: '3',
      MAX_STREAMS_PER_USER: '0',
      MAX_STREAMS_PER_TENANT: '0',
    }),
    startTestService(database.url, { MAX_STREAMS_PER_USER: '2', MAX_STREAMS_PER_TENANT: '3' }),
  ])
})
afterAll(async () => {
  await Promise.all([limited?.close(), capped?.close()])
  await database?.drop()
})

async function expectTooMany(res: Response, detail: RegExp): Promise<void> {
  expect(res.status).toBe(429)
  expect(res.headers.get('content-type')).toBe('application/problem+json')
  const retryAfter = Number(res.headers.get('retry-after'))
  expect(Number.isInteger(retryAfter) && retryAfter >= 1).toBe(true)
  expect(await res.json()).toMatchObject({
    type: expect.stringMatching(/too-many-requests$/),
    status: 429,
    detail: expect.stringMatching(detail),
  })
}

describe('request rate limits', () => {
  it('answers the (N+1)th request of a user with 429, Retry-After and RateLimit-*', async () => {
    const t = newTenant()
    for (let i = 1; i <= 5; i++) {
      const res = await limited.fetch('/v1/jobs', { token: t.alice })
      expect(res.status).toBe(200)
      expect(res.headers.get('ratelimit-limit')).toBe('5')
      expect(res.headers.get('ratelimit-remaining')).toBe(String(5 - i))
    }
    const sixth = await limited.fetch('/v1/jobs', { token: t.alice })
    expect(sixth.headers.get('ratelimit-limit')).toBe('5')
    expect(sixth.headers.get('ratelimit-remaining')).toBe('0')
    expect(Number(sixth.headers.get('retry-after'))).toBeLessThanOrEqual(60)
    expect(Number(sixth.headers.get('ratelimit-reset'))).toBeGreaterThan(0)
    await expectTooMany(sixth, /your user/)
    // Other users are not affected.
    expect((await limited.fetch('/v1/jobs', { token: t.bob })).status).toBe(200)
    expect((await limited.fetch('/v1/jobs', { token: newTenant().alice })).status).toBe(200)
  })

  it('limits a tenant across its users', async () => {
    const t = newTenant()
    for (let i = 0; i < 5; i++)
      expect((await limited.fetch('/v1/jobs', { token: t.alice })).status).toBe(200)
    for (let i = 0; i < 3; i++)
      expect((await limited.fetch('/v1/jobs', { token: t.bob })).status).toBe(200)
    // Bob has used 3 of his 5, but the tenant all 8 of its.
    const res = await limited.fetch('/v1/jobs', { token: t.bob })
    expect(res.headers.get('ratelimit-limit')).toBe('8')
    expect(res.headers.get('ratelimit-remaining')).toBe('0')
    await expectTooMany(res, /your tenant/)
    await expectTooMany(await limited.fetch('/v1/jobs', { token: t.admin }), /your tenant/)
    expect((await limited.fetch('/v1/jobs', { token: newTenant().admin })).status).toBe(200)
  })

  it('charges a multiplexed subscription what its one batched read costs', async () => {
    const t = newTenant()
    const job = await createJob(limited, t.alice)
    const ids = [job.id, ...Array.from({ length: 99 }, () => randomUUID())]
    // 100 jobs cost ceil(100 / 20) = 5 requests: with the create, the user is one over.
    const stream = await openSse(`${limited.url}/v1/events?jobs=${ids.join(',')}`, {
      headers: { authorization: `Bearer ${t.alice}` },
    })
    expect(stream.status).toBe(429)
    await expectTooMany(await limited.fetch('/v1/jobs', { token: t.alice }), /your user/)
    // Over WebSocket: the upgrade is one request, a subscribe of 100 jobs five more.
    const bob = newTenant().bob
    const ws = await openWs(`${limited.url.replace(/^http/, 'ws')}/v1/ws?token=${bob}`)
    try {
      ws.send({ op: 'subscribe', jobs: ids })
      expect(await ws.next('error')).toMatchObject({ status: 429 })
    } finally {
      ws.close()
    }
  })

  it('limits failed authentications per IP, and only those', async () => {
    const bad = [
      {},
      { token: 'garbage' },
      { token: tokenFor({}, { expiresIn: -60 }) },
    ] satisfies Array<{ token?: string }>
    for (const init of bad) {
      const res = await limited.fetch('/v1/jobs', init)
      expect(res.status).toBe(401)
      expect(res.headers.get('ratelimit-limit')).toBe('3')
    }
    await expectTooMany(await limited.fetch('/v1/jobs', { token: 'guess' }), /your address/)
    await expectTooMany(await limited.fetch('/v1/jobs'), /your address/)
    // A valid token from the same address is still served.
    expect((await limited.fetch('/v1/jobs', { token: newTenant().admin })).status).toBe(200)
  })
})

describe('the per-IP limit and X-Forwarded-For', () => {
  let direct: TestService
  let behindProxy: TestService
  beforeAll(async () => {
    ;[direct, behindProxy] = await Promise.all([
      startTestService(database.url, { RATE_LIMIT_PER_IP: '3' }),
      // As behind nginx on the same host: the loopback peer is our proxy.
      startTestService(database.url, { RATE_LIMIT_PER_IP: '3', TRUST_PROXY: 'loopback' }),
    ])
  })
  afterAll(() => Promise.all([direct?.close(), behindProxy?.close()]))

  const failFrom = (service: TestService, forwardedFor: string) =>
    service.fetch('/v1/jobs', { token: 'guess', headers: { 'x-forwarded-for': forwardedFor } })

  it('ignores a spoofed X-Forwarded-For from a local client by default', async () => {
    for (let i = 1; i <= 3; i++) expect((await failFrom(direct, `203.0.113.${i}`)).status).toBe(401)
    await expectTooMany(await failFrom(direct, '203.0.113.4'), /your address/)
  })

  it('counts each forwarded client on its own behind a trusted proxy', async () => {
    for (let i = 1; i <= 3; i++) {
      for (const client of ['198.51.100.1', '198.51.100.2'])
        expect((await failFrom(behindProxy, client)).status).toBe(401)
    }
    await expectTooMany(await failFrom(behindProxy, '198.51.100.1'), /your address/)
    expect((await failFrom(behindProxy, '198.51.100.3')).status).toBe(401)
  })
})

describe('concurrent stream caps', () => {
  const open: Array<() => void> = []
  afterEach(async () => {
    for (const close of open.splice(0)) close()
    await until(() => capped.registry.size === 0, 'every stream to close')
  })

  async function sse(path: string, token: string): Promise<SseClient> {
    const stream = await openSse(`${capped.url}${path}`, {
      headers: { authorization: `Bearer ${token}` },
    })
    open.push(() => stream.close())
    return stream
  }

  async function ws(token: string): Promise<WsClient> {
    const client = await openWs(`${capped.url.replace(/^http/, 'ws')}/v1/ws?token=${token}`)
    open.push(() => client.socket.terminate())
    return client
  }

  /** A long-poll that parks (waits for a terminal status); resolves once it is registered. */
  async function park(jobId: string, token: string): Promise<() => void> {
    const before = capped.registry.size
    const controller = new AbortController()
    const pending = capped
      .fetch(`/v1/jobs/${jobId}/wait?timeout=30`, { token, signal: controller.signal })
      .catch(() => undefined)
    await until(() => capped.registry.size === before + 1, 'the long-poll to park')
    const abort = () => controller.abort()
    open.push(abort)
    void pending
    return abort
  }

  it('refuses the (cap+1)th stream of a user with 429 on every transport, before it opens', async () => {
    const t = newTenant()
    const job = await createJob(capped, t.alice)
    const first = await sse(`/v1/jobs/${job.id}/events`, t.alice)
    expect(first.status).toBe(200)
    const abortWait = await park(job.id, t.alice)
    expect(capped.registry.size).toBe(2)

    const third = await capped.fetch(`/v1/jobs/${job.id}/events`, { token: t.alice })
    await expectTooMany(third, /open streams/)
    await expectTooMany(
      await capped.fetch(`/v1/events?jobs=${job.id}`, { token: t.alice }),
      /open streams/,
    )
    await expectTooMany(await capped.fetch('/v1/events', { token: t.alice }), /open streams/)
    await expectTooMany(
      await capped.fetch(`/v1/jobs/${job.id}/wait?timeout=30`, { token: t.alice }),
      /open streams/,
    )
    const upgrade = await refusedUpgrade(
      `${capped.url.replace(/^http/, 'ws')}/v1/ws?token=${t.alice}`,
    )
    expect(upgrade.status).toBe(429)
    expect(upgrade.headers['retry-after']).toBeDefined()
    expect(capped.registry.size).toBe(2)

    // Closing one frees a slot: the SSE stream first, then the parked long-poll.
    first.close()
    await until(() => capped.registry.size === 1, 'the SSE stream to be released')
    const socket = await ws(t.alice)
    socket.send({ op: 'subscribe', jobs: [job.id] })
    await socket.nextFor(job.id, 'snapshot')
    abortWait()
    await until(() => capped.registry.size === 1, 'the long-poll to be released')
    const again = await sse(`/v1/jobs/${job.id}/events`, t.alice)
    expect(again.status).toBe(200)
    await again.next('snapshot')
  })

  it('holds the cap when many multiplexed streams open at once', async () => {
    const t = newTenant()
    const job = await createJob(capped, t.alice)
    const controllers = Array.from({ length: 6 }, () => new AbortController())
    for (const c of controllers) open.push(() => c.abort())
    // Each open awaits its authorising read after the cap check: all run concurrently.
    const answers = await Promise.all(
      controllers.map((c) =>
        capped.fetch(`/v1/events?jobs=${job.id}`, { token: t.alice, signal: c.signal }),
      ),
    )
    expect(answers.map((r) => r.status).sort()).toEqual([200, 200, 429, 429, 429, 429])
    expect(capped.registry.size).toBe(2)
  })

  it('holds the cap when many single-job streams, long-polls or WebSockets open at once', async () => {
    const t = newTenant()
    const job = await createJob(capped, t.alice)
    const abortable = () => {
      const controller = new AbortController()
      open.push(() => controller.abort())
      return { token: t.alice, signal: controller.signal }
    }
    // Each open awaits its authorising read after the cap check: all run concurrently.
    const streams = await Promise.all(
      Array.from({ length: 6 }, () => capped.fetch(`/v1/jobs/${job.id}/events`, abortable())),
    )
    expect(streams.map((r) => r.status).sort()).toEqual([200, 200, 429, 429, 429, 429])
    expect(capped.registry.size).toBe(2)
    for (const close of open.splice(0)) close()
    await until(() => capped.registry.size === 0, 'the streams to close')

    // Parked long-polls never answer here; the refused ones answer at once.
    const refused: number[] = []
    for (let i = 0; i < 6; i++) {
      void capped
        .fetch(`/v1/jobs/${job.id}/wait?timeout=30`, abortable())
        .then((r) => refused.push(r.status))
        .catch(() => undefined)
    }
    await until(() => refused.length === 4, 'four long-polls to be refused')
    expect(refused).toEqual([429, 429, 429, 429])
    expect(capped.registry.size).toBe(2)
    for (const close of open.splice(0)) close()
    await until(() => capped.registry.size === 0, 'the long-polls to be released')

    const url = `${capped.url.replace(/^http/, 'ws')}/v1/ws?token=${t.alice}`
    const sockets = await Promise.allSettled(Array.from({ length: 6 }, () => openWs(url)))
    for (const s of sockets)
      if (s.status === 'fulfilled') open.push(() => s.value.socket.terminate())
    expect(sockets.filter((s) => s.status === 'fulfilled')).toHaveLength(2)
    expect(capped.registry.size).toBe(2)
  })

  it('counts WebSockets too, and caps a tenant across its users', async () => {
    const t = newTenant()
    const job = await createJob(capped, t.admin)
    await ws(t.alice)
    await ws(t.alice)
    await expectTooMany(
      await capped.fetch(`/v1/jobs/${job.id}/events`, { token: t.alice }),
      /open streams/,
    )
    // The admin's first stream is the tenant's third; Bob's first is over the tenant's cap.
    const admins = await sse(`/v1/jobs/${job.id}/events`, t.admin)
    expect(admins.status).toBe(200)
    await expectTooMany(
      await capped.fetch(`/v1/jobs/${job.id}/events`, { token: t.bob }),
      /tenant already has 3/,
    )
    expect(
      (await refusedUpgrade(`${capped.url.replace(/^http/, 'ws')}/v1/ws?token=${t.bob}`)).status,
    ).toBe(429)
    // Another tenant is not affected.
    const other = newTenant()
    const theirs = await createJob(capped, other.admin)
    const stream = await sse(`/v1/jobs/${theirs.id}/events`, other.admin)
    expect(stream.status).toBe(200)
  })
})

describe('rate limits on WebSocket upgrades', () => {
  let service: TestService
  beforeAll(async () => {
    service = await startTestService(database.url, {
      RATE_LIMIT_PER_USER: '2',
      RATE_LIMIT_PER_IP: '2',
      MAX_STREAMS_PER_USER: '0',
      MAX_STREAMS_PER_TENANT: '0',
    })
  })
  afterAll(() => service?.close())
  const wsUrl = (path: string) => service.url.replace(/^http/, 'ws') + path

  it('counts failed upgrade authentications against the same per-address limit as HTTP', async () => {
    expect((await refusedUpgrade(wsUrl('/v1/ws?token=guess-1'))).status).toBe(401)
    expect((await service.fetch('/v1/jobs', { token: 'guess-2' })).status).toBe(401)
    const refused = await refusedUpgrade(wsUrl('/v1/ws?token=guess-3'))
    expect(refused.status).toBe(429)
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1)
    await expectTooMany(await service.fetch('/v1/jobs', { token: 'guess-4' }), /your address/)
  })

  it("counts each subscribe message against the user's request limit", async () => {
    const t = newTenant()
    const ws = await openWs(wsUrl(`/v1/ws?token=${t.alice}`))
    try {
      ws.send({ op: 'subscribe', jobs: [randomUUID()] })
      expect(await ws.next('error')).toMatchObject({ status: 404 })
      ws.send({ op: 'unsubscribe', jobs: [randomUUID()] })
      ws.send({ op: 'subscribe', feed: 'tenant' })
      const refused = await ws.next('error')
      expect(refused).toMatchObject({ type: 'error', status: 429 })
      expect(refused.detail).toMatch(/Too many requests/)
      expect(ws.socket.readyState).toBe(ws.socket.OPEN)
      expect(ws.messages.filter((m) => m.type === 'error')).toHaveLength(2)
    } finally {
      ws.close()
    }
  })

  it("counts a user's upgrades against its request limit", async () => {
    const t = newTenant()
    expect((await service.fetch('/v1/jobs', { token: t.alice })).status).toBe(200)
    const ws = await openWs(wsUrl(`/v1/ws?token=${t.alice}`))
    ws.close()
    expect((await refusedUpgrade(wsUrl(`/v1/ws?token=${t.alice}`))).status).toBe(429)
    // Another user of the tenant is not affected.
    const other = await openWs(wsUrl(`/v1/ws?token=${t.bob}`))
    other.close()
  })
})
