// A deleted job, in its one shape (docs/api.md, "Deleted jobs"), on every transport: SSE on one
// job, /v1/events?jobs=, the tenant feed, WebSocket (a subscription and the feed) and, with
// Redis, the bridge out and in.
import { Redis } from 'ioredis'
import pg from 'pg'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import { REDIS_URL, requiresRedis } from '../helpers/redis.js'
import { createJob, newTenant, startTestService, type TestService } from '../helpers/service.js'
import { openSse, type SseClient } from '../helpers/sse.js'
import { openWs, until, type WsClient } from '../helpers/ws.js'

const { it: itWithRedis } = await requiresRedis(import.meta.url)

let database: TestDatabase
let service: TestService
let sql: pg.Client
const streams: SseClient[] = []
const sockets: WsClient[] = []

beforeAll(async () => {
  database = await createTestDatabase()
  service = await startTestService(database.url)
  sql = new pg.Client({ connectionString: database.url })
  await sql.connect()
})
afterEach(() => {
  for (const s of streams.splice(0)) s.close()
  for (const s of sockets.splice(0)) s.socket.terminate()
})
afterAll(async () => {
  await sql?.end()
  await service?.close()
  await database?.drop()
})

const deleted = (job: { id: string; version: number }) => ({
  type: 'end',
  job: job.id,
  version: job.version,
  status: 'deleted',
})

async function sse(path: string, token: string, on = service): Promise<SseClient> {
  const stream = await openSse(`${on.url}${path}`, {
    headers: { authorization: `Bearer ${token}` },
  })
  streams.push(stream)
  expect(stream.status).toBe(200)
  return stream
}

async function remove(id: string): Promise<void> {
  await sql.query(`DELETE FROM job_queue WHERE id = $1`, [id])
}

it('SSE on one job: event `end` with the deletion', async () => {
  const t = newTenant()
  const job = await createJob(service, t.admin)
  const stream = await sse(`/v1/jobs/${job.id}/events`, t.admin)
  await stream.next('snapshot')
  await remove(job.id)
  expect((await stream.next('end')).json()).toEqual(deleted(job))
})

it('/v1/events?jobs=: the same event for the deleted job, the others stream on', async () => {
  const t = newTenant()
  const gone = await createJob(service, t.admin)
  const kept = await createJob(service, t.admin)
  const stream = await sse(`/v1/events?jobs=${gone.id},${kept.id}`, t.admin)
  await stream.next('snapshot')
  await stream.next('snapshot')
  await remove(gone.id)
  expect((await stream.next('end')).json()).toEqual(deleted(gone))
  await sql.query(`UPDATE job_queue SET progress = 5 WHERE id = $1`, [kept.id])
  expect((await stream.next('patch')).json()).toMatchObject({ job: kept.id })
})

it('the tenant feed: the same event, only for jobs the caller may see', async () => {
  const t = newTenant()
  const feed = await sse('/v1/events', t.alice)
  const bobs = await createJob(service, t.bob)
  const own = await createJob(service, t.alice)
  expect((await feed.next('snapshot')).json()).toMatchObject({ job: own.id })
  await remove(bobs.id)
  await remove(own.id)
  const end = await feed.next('end')
  expect(end.json()).toEqual(deleted(own))
  expect(feed.events.filter((e) => e.data.includes(bobs.id))).toEqual([])
})

it('WebSocket: the same message for a subscribed job and for a job seen on the feed', async () => {
  const t = newTenant()
  const subscribed = await createJob(service, t.admin)
  const ws = await openWs(`${service.url.replace(/^http/, 'ws')}/v1/ws?token=${t.admin}`)
  sockets.push(ws)
  ws.send({ op: 'subscribe', jobs: [subscribed.id], feed: 'tenant' })
  await ws.nextFor(subscribed.id, 'snapshot')
  const onFeed = await createJob(service, t.admin)
  await ws.nextFor(onFeed.id, 'snapshot')
  await remove(subscribed.id)
  expect(await ws.nextFor(subscribed.id, 'end')).toEqual(deleted(subscribed))
  await remove(onFeed.id)
  expect(await ws.nextFor(onFeed.id, 'end')).toEqual(deleted(onFeed))
  // Once each, though the subscribed job is on the feed too.
  const ends = ws.messages.filter((m) => m.type === 'end').map((m) => m.job)
  expect(ends).toEqual([subscribed.id, onFeed.id])
})

itWithRedis(
  'the Redis bridge publishes the deletion as event `end` with the same data',
  async () => {
    const bridged = await startTestService(database.url, { REDIS_URL, BRIDGE_OUTBOUND: 'true' })
    const subscriber = new Redis(REDIS_URL)
    try {
      await until(() => bridged.bridge!.status === 'ok', 'the bridge to connect')
      const t = newTenant()
      const job = await createJob(bridged, t.admin)
      const received: unknown[] = []
      subscriber.on('message', (_channel: string, raw: string) => received.push(JSON.parse(raw)))
      await subscriber.subscribe(`jobs:${job.id}:events`)
      await remove(job.id)
      await until(
        () => received.some((m) => (m as { event?: string }).event === 'end'),
        'the deletion on Redis',
        10_000,
      )
      expect(received.find((m) => (m as { event?: string }).event === 'end')).toEqual({
        event: 'end',
        data: deleted(job),
        job: job.id,
        version: job.version,
        origin: 'jobwire',
      })
    } finally {
      subscriber.disconnect()
      await bridged.close()
    }
  },
)

itWithRedis('the Redis bridge takes a deletion published by others as a no-op', async () => {
  const bridged = await startTestService(database.url, {
    REDIS_URL,
    BRIDGE_INBOUND: 'true',
  })
  const publisher = new Redis(REDIS_URL)
  try {
    const bridge = bridged.bridge!
    await until(() => bridge.status === 'ok', 'the bridge to connect')
    // The inbound lease is taken within a moment of start-up.
    while ((await publisher.get('jobwire:bridge:inbound-lease')) === null)
      await new Promise((resolve) => setTimeout(resolve, 20))
    const t = newTenant()
    const job = await createJob(bridged, t.admin)
    const channel = `jobs:${job.id}:events`
    const { rejected, applied } = bridge.stats
    await publisher.publish(channel, JSON.stringify(deleted(job)))
    await publisher.publish(channel, JSON.stringify({ event: 'end', data: deleted(job) }))
    await publisher.publish(channel, JSON.stringify({ type: 'progress', progress: 7 }))
    await until(() => bridge.stats.applied === applied + 1, 'the progress report applied')
    expect(bridge.stats.rejected).toBe(rejected)
    const row = await sql.query(`SELECT progress FROM job_queue WHERE id = $1`, [job.id])
    expect(row.rows).toEqual([{ progress: 7 }])
  } finally {
    publisher.disconnect()
    await bridged.close()
  }
})
