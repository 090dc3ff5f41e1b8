import pg from 'pg'
import WebSocket from 'ws'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import { eventually, parseExposition, sampleValue, type Sample } from '../helpers/metrics.js'
import { createJob, newTenant, startTestService, type TestService } from '../helpers/service.js'
import { openSse } from '../helpers/sse.js'

const METRICS_TOKEN = 'metrics-token-0123456789abcdef'

let database: TestDatabase
let service: TestService
let sql: pg.Client

beforeAll(async () => {
  database = await createTestDatabase()
  service = await startTestService(database.url)
  sql = new pg.Client({ connectionString: database.url })
  await sql.connect()
})
afterAll(async () => {
  await sql?.end()
  await service?.close()
  await database?.drop()
})

async function scrape(target: TestService = service, token?: string): Promise<Sample[]> {
  const res = await target.fetch('/metrics', { token })
  expect(res.status).toBe(200)
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/)
  return parseExposition(await res.text())
}

describe('/metrics', () => {
  it('reports the listener connected and the default process metrics', async () => {
    const samples = await scrape()
    expect(sampleValue(samples, 'jobwire_listener_connected')).toBe(1)
    expect(sampleValue(samples, 'jobwire_listener_reconnects_total')).toBe(0)
    expect(sampleValue(samples, 'process_cpu_user_seconds_total')).toBeGreaterThan(0)
    expect(sampleValue(samples, 'nodejs_eventloop_lag_seconds')).toBeDefined()
    for (const transport of ['sse', 'ws', 'longpoll']) {
      expect(sampleValue(samples, 'jobwire_open_streams', { transport })).toBe(0)
      expect(sampleValue(samples, 'jobwire_events_delivered_total', { transport })).toBe(0)
    }
  })

  it('counts an open SSE stream and drops it when the client goes away', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    const stream = await openSse(`${service.url}/v1/jobs/${job.id}/events`, {
      headers: { authorization: `Bearer ${t.admin}` },
    })
    await stream.next('snapshot')
    let samples = await scrape()
    expect(sampleValue(samples, 'jobwire_open_streams', { transport: 'sse' })).toBe(1)
    expect(sampleValue(samples, 'jobwire_hub_watched_jobs')).toBe(1)
    expect(sampleValue(samples, 'jobwire_hub_watchers')).toBe(1)
    expect(sampleValue(samples, 'jobwire_streams_opened_total', { transport: 'sse' })).toBe(1)

    stream.close()
    samples = await eventually(async () => {
      const s = await scrape()
      expect(sampleValue(s, 'jobwire_open_streams', { transport: 'sse' })).toBe(0)
      return s
    })
    expect(sampleValue(samples, 'jobwire_hub_watched_jobs')).toBe(0)
  })

  it('counts notifications, delivered events, bytes and commit-to-delivery latency', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    const stream = await openSse(`${service.url}/v1/jobs/${job.id}/events`, {
      headers: { authorization: `Bearer ${t.admin}` },
    })
    await stream.next('snapshot')
    const before = await scrape()

    await sql.query(`UPDATE job_queue SET status = 'running', progress = 50 WHERE id = $1`, [
      job.id,
    ])
    await stream.next('patch')
    // A completion is read (a result never travels in a notification).
    await sql.query(`UPDATE job_queue SET status = 'completed', result = '{}' WHERE id = $1`, [
      job.id,
    ])
    await stream.next('end')
    const after = await scrape()
    stream.close()

    const delta = (name: string, labels: Record<string, string> = {}) =>
      (sampleValue(after, name, labels) ?? 0) - (sampleValue(before, name, labels) ?? 0)
    expect(delta('jobwire_listener_notifications_total')).toBeGreaterThanOrEqual(1)
    // Two patches and the end.
    expect(delta('jobwire_events_delivered_total', { transport: 'sse' })).toBe(3)
    expect(delta('jobwire_hub_changes_built_total')).toBe(1)
    expect(delta('jobwire_stream_bytes_total', { transport: 'sse' })).toBeGreaterThan(20)
    expect(delta('jobwire_commit_to_delivery_milliseconds_count')).toBeGreaterThanOrEqual(1)
    expect(delta('jobwire_hub_batch_reads_total')).toBeGreaterThanOrEqual(1)
    expect(delta('jobwire_hub_batch_read_rows_total')).toBeGreaterThanOrEqual(1)
    expect(
      sampleValue(after, 'jobwire_commit_to_delivery_milliseconds_bucket', { le: '+Inf' }),
    ).toBe(sampleValue(after, 'jobwire_commit_to_delivery_milliseconds_count'))
    expect(sampleValue(after, 'jobwire_listener_malformed_notifications_total')).toBe(0)
  })

  it('counts a malformed notification', async () => {
    const before = sampleValue(await scrape(), 'jobwire_listener_malformed_notifications_total')
    await sql.query(`NOTIFY jobwire, 'not json'`)
    await eventually(async () =>
      expect(sampleValue(await scrape(), 'jobwire_listener_malformed_notifications_total')).toBe(
        before! + 1,
      ),
    )
  })

  it('counts a WebSocket and the messages written to it', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    const before = await scrape()
    const ws = new WebSocket(`${service.url.replace('http', 'ws')}/v1/ws?token=${t.admin}`)
    const messages: Array<{ type: string }> = []
    ws.on('message', (data: Buffer) =>
      messages.push(JSON.parse(data.toString()) as { type: string }),
    )
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve())
      ws.once('error', reject)
    })
    ws.send(JSON.stringify({ op: 'subscribe', jobs: [job.id] }))
    await eventually(async () => expect(messages.map((m) => m.type)).toContain('snapshot'))
    const during = await scrape()
    expect(sampleValue(during, 'jobwire_open_streams', { transport: 'ws' })).toBe(1)
    const delta = (name: string) =>
      sampleValue(during, name, { transport: 'ws' })! -
      sampleValue(before, name, { transport: 'ws' })!
    expect(delta('jobwire_events_delivered_total')).toBe(messages.length)
    expect(delta('jobwire_stream_bytes_total')).toBeGreaterThan(100)

    ws.close()
    await eventually(async () =>
      expect(sampleValue(await scrape(), 'jobwire_open_streams', { transport: 'ws' })).toBe(0),
    )
  })

  it('shows a parked long-poll until it is answered', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    const waiting = service.fetch(`/v1/jobs/${job.id}/wait?since=${job.version}&timeout=20`, {
      token: t.admin,
    })
    await eventually(async () =>
      expect(sampleValue(await scrape(), 'jobwire_open_streams', { transport: 'longpoll' })).toBe(
        1,
      ),
    )
    const delivered = sampleValue(await scrape(), 'jobwire_events_delivered_total', {
      transport: 'longpoll',
    })!
    await sql.query(`UPDATE job_queue SET progress = 10 WHERE id = $1`, [job.id])
    expect((await waiting).status).toBe(200)
    const samples = await scrape()
    expect(sampleValue(samples, 'jobwire_open_streams', { transport: 'longpoll' })).toBe(0)
    expect(sampleValue(samples, 'jobwire_events_delivered_total', { transport: 'longpoll' })).toBe(
      delivered + 1,
    )
  })
})

describe('/metrics with METRICS_TOKEN, tenant labels and a stream cap', () => {
  let guarded: TestService
  beforeAll(async () => {
    guarded = await startTestService(database.url, {
      METRICS_TOKEN,
      METRICS_TENANT_LABEL: 'true',
      MAX_STREAMS_PER_USER: '1',
    })
  })
  afterAll(() => guarded?.close())

  it('answers 401 without the token and 200 with it', async () => {
    const missing = await guarded.fetch('/metrics')
    expect(missing.status).toBe(401)
    expect(missing.headers.get('content-type')).toBe('application/problem+json')
    expect((await guarded.fetch('/metrics', { token: 'wrong-token-0123456789' })).status).toBe(401)
    expect((await guarded.fetch('/metrics', { token: METRICS_TOKEN })).status).toBe(200)
  })

  it('labels open streams by tenant and counts a cap rejection', async () => {
    const t = newTenant()
    const job = await createJob(guarded, t.admin)
    const url = `${guarded.url}/v1/jobs/${job.id}/events`
    const init = { headers: { authorization: `Bearer ${t.admin}` } }
    const stream = await openSse(url, init)
    await stream.next('snapshot')
    const refused = await openSse(url, init)
    expect(refused.status).toBe(429)

    const samples = await scrape(guarded, METRICS_TOKEN)
    expect(
      sampleValue(samples, 'jobwire_open_streams', { transport: 'sse', tenant: t.tenantId }),
    ).toBe(1)
    expect(
      sampleValue(samples, 'jobwire_open_streams', { transport: 'sse', tenant: 'other' }),
    ).toBe(0)
    expect(sampleValue(samples, 'jobwire_stream_cap_rejections_total')).toBe(1)
    stream.close()
  })
})

it('counts rate-limit rejections by limit', async () => {
  const limited = await startTestService(database.url, { RATE_LIMIT_PER_USER: '2' })
  try {
    const t = newTenant()
    const statuses: number[] = []
    for (let i = 0; i < 3; i++)
      statuses.push((await limited.fetch('/v1/jobs', { token: t.admin })).status)
    expect(statuses).toEqual([200, 200, 429])
    const samples = await scrape(limited)
    expect(sampleValue(samples, 'jobwire_rate_limit_rejections_total', { kind: 'user' })).toBe(1)
    expect(sampleValue(samples, 'jobwire_rate_limit_rejections_total', { kind: 'tenant' })).toBe(0)
  } finally {
    await limited.close()
  }
})

it('answers 404 at /metrics when METRICS_ENABLED=false', async () => {
  const disabled = await startTestService(database.url, { METRICS_ENABLED: 'false' })
  try {
    const res = await disabled.fetch('/metrics')
    expect(res.status).toBe(404)
    expect(res.headers.get('content-type')).toBe('application/problem+json')
  } finally {
    await disabled.close()
  }
})
