// With REDIS_URL, every instance shares one user's (tenant's, watch-token job's, failed-auth
// address's) request limits and stream caps: two instances on the same database and Redis
// refuse the (N+1)th request or stream on either, on every transport; the slots of an
// instance killed with SIGKILL come back within the lease TTL; and with Redis killed the API
// keeps serving, counting in each process, and says so. Keys under a prefix of this file's.
import { spawn, type ChildProcess } from 'node:child_process'
import { Redis } from 'ioredis'
import pg from 'pg'
import { PROJECT_ROOT } from '../../src/project-root.js'
import { createLogger } from '../../src/telemetry/logger.js'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import { parseExposition, sampleValue } from '../helpers/metrics.js'
import {
  deleteKeys,
  REDIS_URL,
  requiresRedis,
  startRedis,
  testKeyPrefix,
} from '../helpers/redis.js'
import {
  createJob,
  newTenant,
  startTestService,
  TEST_JWT_SECRET,
  testEventSource,
  type TestService,
} from '../helpers/service.js'
import { openSse, type SseClient } from '../helpers/sse.js'
import { openWs, refusedUpgrade, until, type WsClient } from '../helpers/ws.js'

const { describe } = await requiresRedis(import.meta.url)

const PREFIX = testKeyPrefix()
const LIMITS = {
  RATE_LIMIT_PER_USER: '4',
  RATE_LIMIT_PER_TENANT: '6',
  RATE_LIMIT_PER_IP: '3',
  RATE_LIMIT_PER_WATCH_JOB: '3',
  MAX_STREAMS_PER_USER: '0',
  MAX_STREAMS_PER_TENANT: '0',
  MAX_STREAMS_PER_WATCH_JOB: '0',
}
const CAPS = {
  MAX_STREAMS_PER_USER: '2',
  MAX_STREAMS_PER_TENANT: '3',
  MAX_STREAMS_PER_WATCH_JOB: '2',
  STREAM_SLOT_TTL_MS: '1500',
}

let database: TestDatabase
let admin: Redis
const services: TestService[] = []
const open: Array<() => void> = []

beforeAll(async () => {
  database = await createTestDatabase()
  admin = new Redis(REDIS_URL)
})
afterEach(() => {
  for (const close of open.splice(0)) close()
})
afterAll(async () => {
  for (const service of services) await service.close()
  if (admin) {
    await deleteKeys(admin, PREFIX)
    await admin.quit()
  }
  await database?.drop()
})

async function instance(env: Record<string, string>, options = {}): Promise<TestService> {
  const service = await startTestService(
    database.url,
    { REDIS_URL, LIMITS_KEY_PREFIX: PREFIX, ...env },
    options,
  )
  services.push(service)
  return service
}

async function expectTooMany(res: Response, detail: RegExp): Promise<void> {
  expect(res.status).toBe(429)
  expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1)
  expect(await res.json()).toMatchObject({ status: 429, detail: expect.stringMatching(detail) })
}

async function sse(service: TestService, path: string, token: string): Promise<SseClient> {
  const stream = await openSse(`${service.url}${path}`, {
    headers: { authorization: `Bearer ${token}` },
  })
  open.push(() => stream.close())
  return stream
}

async function ws(service: TestService, token: string): Promise<WsClient> {
  const socket = await openWs(`${service.url.replace(/^http/, 'ws')}/v1/ws?token=${token}`)
  open.push(() => socket.socket.terminate())
  return socket
}

/** A long-poll parked on `service` (it answers only when aborted). */
async function park(service: TestService, jobId: string, token: string): Promise<() => void> {
  const before = service.registry.size
  const controller = new AbortController()
  service
    .fetch(`/v1/jobs/${jobId}/wait?timeout=30`, { token, signal: controller.signal })
    .catch(() => undefined)
  await until(() => service.registry.size === before + 1, 'the long-poll to park')
  const abort = () => controller.abort()
  open.push(abort)
  return abort
}

/** Every transport refuses `token`'s next stream on `service` (a link has no tenant feed). */
async function expectEveryStreamRefused(
  service: TestService,
  jobId: string,
  token: string,
  detail: RegExp,
): Promise<void> {
  const before = service.registry.size
  await expectTooMany(await service.fetch(`/v1/jobs/${jobId}/events`, { token }), detail)
  await expectTooMany(await service.fetch(`/v1/jobs/${jobId}?stream=true`, { token }), detail)
  await expectTooMany(await service.fetch(`/v1/events?jobs=${jobId}`, { token }), detail)
  if (!/through watch tokens/.test(detail.source))
    await expectTooMany(await service.fetch('/v1/events', { token }), detail)
  await expectTooMany(await service.fetch(`/v1/jobs/${jobId}/wait?timeout=30`, { token }), detail)
  const upgrade = await refusedUpgrade(`${service.url.replace(/^http/, 'ws')}/v1/ws?token=${token}`)
  expect(upgrade.status).toBe(429)
  expect(service.registry.size).toBe(before)
}

/** Live members of one stream bucket in `client`'s Redis. */
async function liveSlots(client: Redis, bucketKey: string): Promise<number> {
  const [seconds, micros] = await client.time()
  const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000)
  return client.zcount(`${PREFIX}streams:${bucketKey}`, now + 1, '+inf')
}

async function eventually(check: () => Promise<boolean>, what: string, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 25))
  }
}

describe('request limits shared by two instances', () => {
  let a: TestService
  let b: TestService
  beforeAll(async () => {
    ;[a, b] = await Promise.all([instance(LIMITS), instance(LIMITS)])
  })

  it("refuses a user's (N+1)th request on either instance, with RateLimit-* counting down across both", async () => {
    const t = newTenant()
    const resets: number[] = []
    for (const [i, service] of [a, b, a, b].entries()) {
      const res = await service.fetch('/v1/jobs', { token: t.alice })
      expect(res.status).toBe(200)
      expect(res.headers.get('ratelimit-policy')).toBe('4;w=60')
      expect(res.headers.get('ratelimit-limit')).toBe('4')
      expect(res.headers.get('ratelimit-remaining')).toBe(String(3 - i))
      resets.push(Number(res.headers.get('ratelimit-reset')))
    }
    // One window, opened by the first request, whichever instance counts.
    expect(Math.max(...resets) - Math.min(...resets)).toBeLessThanOrEqual(1)
    for (const service of [a, b]) {
      const res = await service.fetch('/v1/jobs', { token: t.alice })
      expect(res.headers.get('ratelimit-limit')).toBe('4')
      expect(res.headers.get('ratelimit-remaining')).toBe('0')
      expect(Number(res.headers.get('ratelimit-reset'))).toBeLessThanOrEqual(Math.max(...resets))
      await expectTooMany(res, /for your user/)
    }
    expect((await b.fetch('/v1/jobs', { token: t.bob })).status).toBe(200)
  })

  it("refuses a tenant's (N+1)th request across its users and both instances", async () => {
    const t = newTenant()
    for (const service of [a, b, a])
      expect((await service.fetch('/v1/jobs', { token: t.alice })).status).toBe(200)
    for (const service of [b, a, b])
      expect((await service.fetch('/v1/jobs', { token: t.bob })).status).toBe(200)
    for (const service of [a, b]) {
      const res = await service.fetch('/v1/jobs', { token: t.admin })
      expect(res.headers.get('ratelimit-limit')).toBe('6')
      await expectTooMany(res, /for your tenant/)
    }
  })

  it("refuses a watch-token job's (N+1)th request on either instance, not its owner's", async () => {
    const t = newTenant()
    const job = await createJob(a, t.admin)
    const link = job.watch_token as string
    for (const service of [a, b, a])
      expect((await service.fetch(`/v1/jobs/${job.id}`, { token: link })).status).toBe(200)
    for (const service of [b, a])
      await expectTooMany(
        await service.fetch(`/v1/jobs/${job.id}`, { token: link }),
        /through watch tokens/,
      )
    expect((await b.fetch(`/v1/jobs/${job.id}`, { token: t.admin })).status).toBe(200)
  })

  it("refuses an address's (N+1)th failed authentication on either instance", async () => {
    for (const [i, service] of [a, b, a].entries())
      expect((await service.fetch('/v1/jobs', { token: `guess-${i}` })).status).toBe(401)
    for (const service of [b, a])
      await expectTooMany(await service.fetch('/v1/jobs', { token: 'guess' }), /your address/)
  })
})

describe('stream caps shared by two instances', () => {
  let a: TestService
  let b: TestService
  beforeAll(async () => {
    ;[a, b] = await Promise.all([instance(CAPS), instance(CAPS)])
  })

  it("refuses a user's (N+1)th stream on either instance, on every transport", async () => {
    const t = newTenant()
    const job = await createJob(a, t.alice)
    const first = await sse(a, `/v1/jobs/${job.id}/events`, t.alice)
    expect(first.status).toBe(200)
    const abortWait = await park(b, job.id, t.alice)
    for (const service of [a, b])
      await expectEveryStreamRefused(service, job.id, t.alice, /You already have 2 open streams/)

    // A stream closed on A frees its slot for B, and the other way round.
    first.close()
    await until(() => a.registry.size === 0, 'the SSE stream on A to close')
    await eventually(
      async () => (await liveSlots(admin, `u:${t.tenantId}:alice`)) === 1,
      'A to free its slot',
    )
    const socket = await ws(b, t.alice)
    socket.send({ op: 'subscribe', jobs: [job.id] })
    await socket.nextFor(job.id, 'snapshot')
    await expectTooMany(
      await a.fetch(`/v1/jobs/${job.id}/events`, { token: t.alice }),
      /open streams/,
    )
    abortWait()
    await eventually(
      async () => (await liveSlots(admin, `u:${t.tenantId}:alice`)) === 1,
      'B to free the long-poll',
    )
    const feed = await sse(a, `/v1/events?jobs=${job.id}`, t.alice)
    expect(feed.status).toBe(200)
    await feed.next('snapshot')
  })

  it("refuses a tenant's and a watch-token job's (N+1)th stream across both instances", async () => {
    const t = newTenant()
    const job = await createJob(a, t.alice)
    expect((await sse(a, `/v1/jobs/${job.id}/events`, t.alice)).status).toBe(200)
    expect((await sse(b, '/v1/events', t.bob)).status).toBe(200)
    expect((await sse(b, `/v1/jobs/${job.id}/events`, t.admin)).status).toBe(200)
    for (const service of [a, b])
      await expectEveryStreamRefused(service, job.id, t.admin, /Your tenant already has 3/)

    const link = job.watch_token as string
    expect((await sse(a, `/v1/jobs/${job.id}/events`, link)).status).toBe(200)
    expect((await sse(b, `/v1/events?jobs=${job.id}`, link)).status).toBe(200)
    for (const service of [a, b])
      await expectEveryStreamRefused(service, job.id, link, /through watch tokens/)
  })

  it('frees the slots of an instance killed with SIGKILL within the lease TTL', async () => {
    const child = await startChild({ ...CAPS, REDIS_URL, LIMITS_KEY_PREFIX: PREFIX })
    try {
      const t = newTenant()
      const job = await createJob(a, t.alice)
      const held = [
        await openSse(`${child.url}/v1/jobs/${job.id}/events`, {
          headers: { authorization: `Bearer ${t.alice}` },
        }),
        await openSse(`${child.url}/v1/jobs/${job.id}/events`, {
          headers: { authorization: `Bearer ${t.alice}` },
        }),
      ]
      for (const stream of held) await stream.next('snapshot')
      await expectTooMany(
        await a.fetch(`/v1/jobs/${job.id}/events`, { token: t.alice }),
        /You already have 2/,
      )

      // No shutdown, no release: the slots go once their lease runs out.
      await child.kill()
      for (const stream of held) stream.close()
      const ttlMs = Number(CAPS.STREAM_SLOT_TTL_MS)
      await eventually(
        async () => (await liveSlots(admin, `u:${t.tenantId}:alice`)) === 0,
        'the dead instance’s slots to expire',
        ttlMs + 5000,
      )
      expect((await sse(a, `/v1/jobs/${job.id}/events`, t.alice)).status).toBe(200)
      expect((await sse(b, `/v1/jobs/${job.id}/events`, t.alice)).status).toBe(200)
      await expectTooMany(
        await b.fetch(`/v1/jobs/${job.id}/events`, { token: t.alice }),
        /You already have 2/,
      )
    } finally {
      await child.kill()
    }
  }, 60_000)
})

describe('with its Redis down', () => {
  it('keeps serving, counting in each process, says so, and shares again once Redis is back', async () => {
    let redis = await startRedis()
    const port = redis.port
    const raw: string[] = []
    const logger = createLogger({
      level: 'warn',
      pretty: false,
      destination: { write: (line: string) => void raw.push(line) },
    })
    const env = {
      REDIS_URL: redis.url,
      RATE_LIMIT_PER_USER: '5',
      MAX_STREAMS_PER_USER: '2',
      STREAM_SLOT_TTL_MS: '1500',
    }
    const service = await instance(env, { logger })
    const sql = new pg.Client({ connectionString: database.url })
    await sql.connect()
    let own = new Redis(redis.url)
    try {
      const check = async (on = service) =>
        ((await (await on.fetch('/readyz')).json()) as { checks: { redis?: string } }).checks.redis
      expect(await check()).toBe('ok')
      const t = newTenant()
      const job = await createJob(service, t.alice)
      const stream = await sse(service, `/v1/jobs/${job.id}/events`, t.alice)
      await stream.next('snapshot')
      // Two requests so far, counted in Redis.
      expect(await own.get(`${PREFIX}rl:user:u:${t.tenantId}:alice`)).toBe('2')
      expect(await liveSlots(own, `u:${t.tenantId}:alice`)).toBe(1)
      own.disconnect()

      await redis.kill()
      await eventually(async () => (await check()) === 'degraded', 'readiness to say degraded')
      // Requests are counted in this process (from 0), streams too; the open stream goes on.
      const res = await service.fetch('/v1/jobs', { token: t.alice })
      expect(res.status).toBe(200)
      expect(res.headers.get('ratelimit-remaining')).toBe('4')
      await sql.query(`UPDATE job_queue SET progress = 10 WHERE id = $1`, [job.id])
      await stream.next('patch')
      expect((await sse(service, `/v1/jobs/${job.id}/events`, t.alice)).status).toBe(200)
      await expectTooMany(
        await service.fetch(`/v1/jobs/${job.id}/events`, { token: t.alice }),
        /You already have 2/,
      )
      const ready = await service.fetch('/readyz')
      expect(ready.status).toBe(200)
      const samples = parseExposition(await (await service.fetch('/metrics')).text())
      expect(sampleValue(samples, 'jobwire_limits_redis_connected')).toBe(0)
      expect(
        sampleValue(samples, 'jobwire_limits_fallbacks_total', { store: 'rate_limit' }),
      ).toBeGreaterThanOrEqual(4)
      expect(
        sampleValue(samples, 'jobwire_limits_fallbacks_total', { store: 'stream_slots' }),
      ).toBe(2)
      const warnings = raw.map((line) => JSON.parse(line) as { msg: string; level: number })
      expect(warnings.filter((l) => /Redis does not answer/.test(l.msg))).toHaveLength(1)

      // An instance started meanwhile does not wait for Redis.
      const late = await instance({ ...env, REDIS_URL: `redis://127.0.0.1:${port}` })
      expect((await late.fetch('/v1/jobs', { token: newTenant().alice })).status).toBe(200)

      // Redis is back, empty: both open streams are written back by the next renewal.
      redis = await startRedis(port)
      own = new Redis(redis.url)
      for (const on of [service, late])
        await eventually(async () => (await check(on)) === 'ok', 'readiness to say ok', 20_000)
      await eventually(
        async () => (await liveSlots(own, `u:${t.tenantId}:alice`)) === 2,
        'the open streams to be written back',
      )
      await expectTooMany(
        await late.fetch(`/v1/jobs/${job.id}/events`, { token: t.alice }),
        /You already have 2/,
      )
      // The instance that started without Redis counts requests in it now.
      const u = newTenant()
      expect((await late.fetch('/v1/jobs', { token: u.alice })).status).toBe(200)
      expect(await own.get(`${PREFIX}rl:user:u:${u.tenantId}:alice`)).toBe('1')
      expect(
        raw
          .map((line) => JSON.parse(line) as { msg: string })
          .filter((l) => /Redis does not answer/.test(l.msg)),
      ).toHaveLength(1)
    } finally {
      own.disconnect()
      await sql.end()
      await redis.kill()
    }
  }, 60_000)
})

interface Child {
  url: string
  kill(): Promise<void>
}

/** `node src/main.ts` on the test database, as a process of its own that a test can kill. */
async function startChild(env: Record<string, string>): Promise<Child> {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: PROJECT_ROOT,
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: process.env.HOME ?? '/tmp',
      NODE_ENV: 'test',
      DATABASE_URL: database.url,
      JWT_SECRET: TEST_JWT_SECRET,
      MIGRATE_ON_START: 'false',
      EVENT_SOURCE: testEventSource,
      HOST: '127.0.0.1',
      PORT: '0',
      LOG_LEVEL: 'info',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const kill = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    await exited
  }
  let out = ''
  let err = ''
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (err += chunk))
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no start within 60 s: ${err}`)), 60_000)
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk
      const match = /"url":"(http:\/\/[^"]+)"[^\n]*jobwire is listening/.exec(out)
      if (match) {
        clearTimeout(timer)
        resolve(match[1]!)
      }
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`exited with ${code}: ${err}`))
    })
  }).catch(async (error: unknown) => {
    await kill()
    throw error
  })
  return { url, kill }
}
