// The Redis bridge against the machine's real Redis (and a redis-server of our own for the
// outage test). Skipped, saying why, only when no Redis answers at 127.0.0.1:6379.
import { spawn, type ChildProcess } from 'node:child_process'
import { createServer } from 'node:net'
import { Redis } from 'ioredis'
import pg from 'pg'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import { requiresTool } from '../helpers/requires.js'
import { createJob, newTenant, startTestService, type TestService } from '../helpers/service.js'
import { openSse } from '../helpers/sse.js'

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'

async function redisAnswers(url: string): Promise<boolean> {
  const client = new Redis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  })
  client.on('error', () => undefined)
  try {
    await client.connect()
    return (await client.ping()) === 'PONG'
  } catch {
    return false
  } finally {
    client.disconnect()
  }
}

const { describe: describeWithRedis } = requiresTool(
  'Redis',
  (await redisAnswers(REDIS_URL)) ? undefined : `no Redis answers at ${REDIS_URL}`,
  import.meta.url,
)

interface Received {
  channel: string
  message: Record<string, unknown>
}

/** A pattern subscriber that collects messages and lets a test wait for a condition. */
async function subscribe(url: string, pattern = 'jobs:*:events') {
  const client = new Redis(url, { maxRetriesPerRequest: null })
  client.on('error', () => undefined)
  const received: Received[] = []
  const waiters = new Set<() => void>()
  client.on('pmessage', (_p: string, channel: string, raw: string) => {
    let message: Record<string, unknown>
    try {
      message = JSON.parse(raw) as Record<string, unknown>
    } catch {
      message = { unparsed: raw }
    }
    received.push({ channel, message })
    for (const w of waiters) w()
  })
  await client.psubscribe(pattern)
  return {
    received,
    until(predicate: () => boolean, timeoutMs = 10_000): Promise<void> {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (!predicate()) return
          clearTimeout(timer)
          waiters.delete(check)
          resolve()
        }
        const timer = setTimeout(() => {
          waiters.delete(check)
          reject(
            new Error(
              `timed out; received ${JSON.stringify(received.map((r) => r.message.event ?? r.message.type))}`,
            ),
          )
        }, timeoutMs)
        waiters.add(check)
        check()
      })
    },
    close: () => client.disconnect(),
  }
}

async function until(
  predicate: () => boolean | Promise<boolean>,
  timeoutMs = 15_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((r) => setTimeout(r, 50))
  }
}

describeWithRedis('the Redis bridge', () => {
  let database: TestDatabase
  let sql: pg.Client
  const services: TestService[] = []

  beforeAll(async () => {
    database = await createTestDatabase()
    sql = new pg.Client({ connectionString: database.url })
    await sql.connect()
  })
  afterAll(async () => {
    for (const s of services) await s.close()
    await sql?.end()
    await database?.drop()
  })

  it('publishes each job event once, in order, with two API instances running', async () => {
    const env = { REDIS_URL, BRIDGE_OUTBOUND: 'true' }
    const a = await startTestService(database.url, env)
    const b = await startTestService(database.url, env)
    services.push(a, b)
    const t = newTenant()
    const job = await createJob(a, t.admin)
    const sub = await subscribe(REDIS_URL, `jobs:${job.id}:events`)
    const progressSeen = () =>
      sub.received
        .filter((r) => r.message.event === 'progress-update' && (r.message.version as number) >= 2)
        .map((r) => (r.message.data as { progress: number }).progress)
    try {
      // One change at a time: every change produces its events, once, whichever instance wins.
      await sql.query(
        `UPDATE job_queue SET status = 'running', progress = 30, step = 'one' WHERE id = $1`,
        [job.id],
      )
      await sub.until(() => progressSeen().includes(30))
      await sql.query(`UPDATE job_queue SET progress = 60 WHERE id = $1`, [job.id])
      await sub.until(() => progressSeen().includes(60))
      await sql.query(
        `UPDATE job_queue SET status = 'completed', progress = 100, result = '{"n":1}' WHERE id = $1`,
        [job.id],
      )
      await sub.until(() => sub.received.some((r) => r.message.event === 'complete'))
      expect(progressSeen()).toEqual([30, 60, 100])
      const seen = sub.received.map(
        (r) => `${String(r.message.version)}:${String(r.message.event)}`,
      )
      expect(new Set(seen).size).toBe(seen.length)
      const versions = sub.received.map((r) => r.message.version as number)
      expect([...versions].sort((x, y) => x - y)).toEqual(versions)
      expect(sub.received.find((r) => r.message.event === 'complete')!.message).toMatchObject({
        job: job.id,
        version: 4,
        origin: 'jobwire',
        data: { result: { n: 1 } },
      })

      // A burst: versions still go out once each and in order (some may be merged).
      const burst = await createJob(a, t.admin)
      const burstSub = await subscribe(REDIS_URL, `jobs:${burst.id}:events`)
      try {
        for (let p = 1; p <= 20; p++)
          await sql.query(`UPDATE job_queue SET progress = $2 WHERE id = $1`, [burst.id, p * 5])
        await burstSub.until(() =>
          burstSub.received.some(
            (r) =>
              r.message.event === 'progress-update' &&
              (r.message.data as { progress: number }).progress === 100,
          ),
        )
        const burstVersions = burstSub.received
          .filter((r) => r.message.event === 'progress-update')
          .map((r) => r.message.version as number)
        expect(new Set(burstVersions).size).toBe(burstVersions.length)
        expect([...burstVersions].sort((x, y) => x - y)).toEqual(burstVersions)
      } finally {
        burstSub.close()
      }
    } finally {
      sub.close()
    }
  })

  it('applies a legacy worker’s reports to the row, reaching SSE watchers, without an echo loop', async () => {
    const service = await startTestService(database.url, {
      REDIS_URL,
      BRIDGE_OUTBOUND: 'true',
      BRIDGE_INBOUND: 'true',
    })
    services.push(service)
    const bridge = service.bridge!
    await until(() => bridge.status === 'ok')
    const t = newTenant()
    const job = await createJob(service, t.admin)
    const stream = await openSse(`${service.url}/v1/jobs/${job.id}/events`, {
      headers: { authorization: `Bearer ${t.admin}` },
    })
    await stream.next('snapshot')
    const publisher = new Redis(REDIS_URL)
    const sub = await subscribe(REDIS_URL, `jobs:${job.id}:events`)
    try {
      // The inbound lease is taken within a moment of start-up.
      await until(async () => (await publisher.get('jobwire:bridge:inbound-lease')) !== null)
      const channel = `jobs:${job.id}:events`
      await publisher.publish(
        channel,
        JSON.stringify({ type: 'progress', progress: 40, step: 'legacy step' }),
      )
      const patch = await stream.next('patch')
      expect(patch.json<Array<{ path: string; value: unknown }>>()).toEqual(
        expect.arrayContaining([expect.objectContaining({ path: '/progress', value: 40 })]),
      )
      const rejectedBefore = bridge.stats.rejected
      await publisher.publish(channel, '{"type":"progress","progress":"lots"}')
      await publisher.publish(channel, 'not json')
      await until(() => bridge.stats.rejected === rejectedBefore + 2)
      await publisher.publish(channel, JSON.stringify({ status: 'SUCCESS', result: { rows: 3 } }))
      await stream.next('end')
      const row = await sql.query(
        `SELECT status, progress, step, result FROM job_queue WHERE id = $1`,
        [job.id],
      )
      expect(row.rows[0]).toMatchObject({
        status: 'completed',
        progress: 100,
        step: 'legacy step',
        result: { rows: 3 },
      })
      await sub.until(() => sub.received.some((r) => r.message.event === 'complete'))
      // Our own outbound messages came back on the pattern subscription and were not applied.
      expect(bridge.stats.applied).toBe(2)
      expect(bridge.stats.echoes).toBeGreaterThan(0)
      const versions = await sql.query(`SELECT version FROM job_queue WHERE id = $1`, [job.id])
      expect(Number(versions.rows[0].version)).toBe(3)
    } finally {
      sub.close()
      publisher.disconnect()
      stream.close()
    }
  })

  it('keeps serving while its Redis is down and resumes when Redis is back', async () => {
    const port = await freePort()
    let redis = await startRedis(port)
    const url = `redis://127.0.0.1:${port}`
    const service = await startTestService(database.url, {
      REDIS_URL: url,
      BRIDGE_OUTBOUND: 'true',
    })
    services.push(service)
    try {
      await until(() => service.bridge!.status === 'ok')
      const t = newTenant()
      const job = await createJob(service, t.admin)
      redis.kill('SIGKILL')
      await until(() => service.bridge!.status === 'degraded')
      // The API keeps answering; readiness does not fail because of Redis.
      expect((await service.fetch('/v1/jobs', { token: t.admin })).status).toBe(200)
      const ready = await service.fetch('/readyz')
      expect(ready.status).toBe(200)
      expect(await ready.json()).toMatchObject({ checks: { redis: 'degraded' } })
      await sql.query(`UPDATE job_queue SET progress = 10 WHERE id = $1`, [job.id])
      expect((await service.fetch(`/v1/jobs/${job.id}`, { token: t.admin })).status).toBe(200)

      redis = await startRedis(port)
      await until(() => service.bridge!.status === 'ok', 20_000)
      const sub = await subscribe(url, `jobs:${job.id}:events`)
      try {
        await sql.query(`UPDATE job_queue SET progress = 20 WHERE id = $1`, [job.id])
        await sub.until(() =>
          sub.received.some((r) => (r.message.data as { progress?: number }).progress === 20),
        )
      } finally {
        sub.close()
      }
    } finally {
      redis.kill('SIGKILL')
    }
  }, 40_000)
})

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address()
      srv.close(() => resolve(typeof address === 'object' && address ? address.port : 0))
    })
  })
}

async function startRedis(port: number): Promise<ChildProcess> {
  const child = spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      '/tmp',
    ],
    {
      stdio: 'ignore',
    },
  )
  const url = `redis://127.0.0.1:${port}`
  await until(() => redisAnswers(url), 10_000)
  return child
}
