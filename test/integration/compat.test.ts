// The compatibility routes (docs/compat.md), driven the way each system's client drives them,
// on an instance started with COMPAT_ROUTES=all; the `jobs` routes without a token on one
// started with COMPAT_ANONYMOUS_READ=true; and none of the paths on one without the switch.
import { randomUUID } from 'node:crypto'
import fastJsonPatch from 'fast-json-patch'
import pg from 'pg'
import { createLogger } from '../../src/telemetry/logger.js'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import { createJob, newTenant, startTestService, type TestService } from '../helpers/service.js'
import { openSse, type SseClient } from '../helpers/sse.js'
import { openWs, refusedUpgrade, until } from '../helpers/ws.js'

type Doc = Record<string, unknown> & { version: number; status: string }

let database: TestDatabase
let service: TestService
let sql: pg.Client
const streams: SseClient[] = []

beforeAll(async () => {
  database = await createTestDatabase()
  service = await startTestService(database.url, { COMPAT_ROUTES: 'all' })
  sql = new pg.Client({ connectionString: database.url })
  await sql.connect()
})
afterEach(() => {
  for (const stream of streams.splice(0)) stream.close()
})
afterAll(async () => {
  await sql?.end()
  await service?.close()
  await database?.drop()
})

const update = (statement: string, id: string) => sql.query(statement, [id])

async function getJson(path: string, token?: string, svc = service) {
  const res = await svc.fetch(path, { token })
  return { status: res.status, type: res.headers.get('content-type'), body: await res.json() }
}

async function open(path: string, init: RequestInit = {}, svc = service): Promise<SseClient> {
  const stream = await openSse(svc.url + path, init)
  streams.push(stream)
  return stream
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

describe('api-jobs: GET /api/jobs/:id', () => {
  it("walks a member's job through pending, processing and completed with its result", async () => {
    const t = newTenant()
    const job = await createJob(service, t.alice, { type: 'parse' })
    const path = `/api/jobs/${job.id}`
    const base = { id: job.id, type: 'parse', created_at: job.created_at }
    expect((await getJson(path, t.alice)).body).toEqual({ ...base, status: 'pending' })
    await update(`UPDATE job_queue SET status = 'running', progress = 40 WHERE id = $1`, job.id)
    expect((await getJson(path, t.alice)).body).toEqual({ ...base, status: 'processing' })
    await update(
      `UPDATE job_queue SET status = 'completed', progress = 100, result = '{"pages":3}' WHERE id = $1`,
      job.id,
    )
    const { body } = await getJson(path, t.alice)
    expect(body).toEqual({
      ...base,
      status: 'completed',
      result: { pages: 3 },
      completed_at: expect.stringMatching(/^\d{4}-/),
    })
  })

  it("gives a failed job's error as its message string, and a cancelled one as failed", async () => {
    const t = newTenant()
    const job = await createJob(service, t.alice)
    await update(
      `UPDATE job_queue SET status = 'failed', error = '{"message":"bad PDF","code":"E_PDF"}' WHERE id = $1`,
      job.id,
    )
    const { body } = await getJson(`/api/jobs/${job.id}`, t.alice)
    expect(body).toMatchObject({ status: 'failed', error: 'bad PDF' })
    expect(body.completed_at).toEqual(expect.any(String))
    expect(body).not.toHaveProperty('result')

    const cancelled = await createJob(service, t.alice)
    expect(
      (await service.fetch(`/v1/jobs/${cancelled.id}/cancel`, { method: 'POST', token: t.alice }))
        .status,
    ).toBe(200)
    expect((await getJson(`/api/jobs/${cancelled.id}`, t.alice)).body).toMatchObject({
      status: 'failed',
      error: 'The job was cancelled.',
    })
  })

  it('takes the Authorization header only: 401 without it', async () => {
    const t = newTenant()
    const job = await createJob(service, t.alice)
    const res = await service.fetch(`/api/jobs/${job.id}?token=${t.alice}`)
    expect(res.status).toBe(401)
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/)
  })
})

describe('api-jobs: GET /api/jobs/:id/events (admins)', () => {
  it('refuses a member with 403 and a missing token with 401', async () => {
    const t = newTenant()
    const job = await createJob(service, t.alice)
    const member = await service.fetch(`/api/jobs/${job.id}/events?token=${t.alice}`)
    expect(member.status).toBe(403)
    expect(member.headers.get('content-type')).toMatch(/^application\/problem\+json/)
    expect((await service.fetch(`/api/jobs/${job.id}/events`)).status).toBe(401)
    expect(
      (await service.fetch(`/api/jobs/${job.id}/events?token=${job.watch_token}`)).status,
    ).toBe(403)
  })

  it('pushes the current state at once, each change, and closes after the terminal one', async () => {
    const t = newTenant()
    const job = await createJob(service, t.alice)
    const stream = await open(`/api/jobs/${job.id}/events?token=${t.admin}`)
    expect(stream.status).toBe(200)
    const first = await stream.next()
    expect(first.event).toBe('message')
    expect(first.json()).toEqual({ status: 'queued', progress: 0, step: 'initializing' })
    await update(
      `UPDATE job_queue SET status = 'running', progress = 25, step = 'parsing-document' WHERE id = $1`,
      job.id,
    )
    expect((await stream.next()).json()).toEqual({
      status: 'processing',
      progress: 0.25,
      step: 'parsing-document',
    })
    await update(
      `UPDATE job_queue SET status = 'completed', progress = 100, step = 'storing-vectors' WHERE id = $1`,
      job.id,
    )
    const last = await stream.next()
    expect(last.json()).toEqual({ status: 'completed', progress: 1, step: 'storing-vectors' })
    await stream.closed
    expect(stream.events.map((e) => e.event)).toEqual(['message', 'message', 'message'])
    // EventSource reconnects with the last id: the job is over, 204 tells it to stop.
    const again = await service.fetch(`/api/jobs/${job.id}/events?token=${t.admin}`, {
      headers: { 'last-event-id': last.id! },
    })
    expect(again.status).toBe(204)
  })
})

describe('api-queue: GET /api/queue/poll/:id and /wait', () => {
  it('polls the task shape, progress 0–100 and result null until completed', async () => {
    const t = newTenant()
    const job = await createJob(service, t.alice)
    await update(`UPDATE job_queue SET status = 'running', progress = 42.5 WHERE id = $1`, job.id)
    expect((await getJson(`/api/queue/poll/${job.id}`, t.alice)).body).toEqual({
      task_id: job.id,
      status: 'running',
      result: null,
      progress: 42.5,
      created_at: job.created_at,
      completed_at: null,
    })
  })

  it('answers the long-poll at completion, not at a progress change or its timeout', async () => {
    const t = newTenant()
    const job = await createJob(service, t.alice)
    const parked = service.registry.countByKind('longpoll')
    let answered = false
    const response = service
      .fetch(`/api/queue/poll/${job.id}/wait?timeout=60`, { token: t.alice })
      .finally(() => (answered = true))
    await until(() => service.registry.countByKind('longpoll') > parked, 'the wait to park')
    // A v1 stream on the same job tells when the hub has delivered the progress change.
    const watch = await open(`/v1/jobs/${job.id}/events`, { headers: bearer(t.alice) })
    await watch.next('snapshot')
    await update(`UPDATE job_queue SET status = 'running', progress = 50 WHERE id = $1`, job.id)
    await watch.next('patch')
    expect(answered).toBe(false)
    await update(
      `UPDATE job_queue SET status = 'completed', progress = 100, result = '"done"' WHERE id = $1`,
      job.id,
    )
    const res = await response
    expect(res.status).toBe(200)
    expect(res.headers.get('jobwire-timed-out')).toBe('false')
    expect(await res.json()).toMatchObject({ task_id: job.id, status: 'completed', result: 'done' })
  })

  it('has the bounds and 400s of /v1/jobs/:id/wait', async () => {
    const t = newTenant()
    const job = await createJob(service, t.alice)
    for (const query of ['timeout=61', 'timeout=soon', 'timeout=1&timeout=2', 'wait=1']) {
      const compat = await service.fetch(`/api/queue/poll/${job.id}/wait?${query}`, {
        token: t.alice,
      })
      const v1 = await service.fetch(`/v1/jobs/${job.id}/wait?${query}`, { token: t.alice })
      expect([query, compat.status]).toEqual([query, 400])
      const [a, b] = [(await compat.json()) as Doc, (await v1.json()) as Doc]
      expect(a.detail).toBe(b.detail)
    }
    const now = await service.fetch(`/api/queue/poll/${job.id}/wait?timeout=0`, { token: t.alice })
    expect(now.headers.get('jobwire-timed-out')).toBe('true')
    expect(await now.json()).toMatchObject({ task_id: job.id, status: 'queued' })
  })
})

describe('api-v1: GET /api/v1/jobs/:id/stream and /status', () => {
  it('sends connected first, then step-change, progress-update and complete, and closes', async () => {
    const t = newTenant()
    const job = await createJob(service, t.alice)
    const stream = await open(`/api/v1/jobs/${job.id}/stream?token=${t.alice}`)
    const connected = (await stream.next()).json<{ type: string; data: Record<string, unknown> }>()
    expect(connected).toEqual({
      type: 'connected',
      data: { connectionId: expect.any(String), jobId: job.id },
    })
    expect((await stream.next()).json()).toEqual({
      type: 'progress-update',
      data: { progress: 0, currentStep: null, estimatedTimeRemaining: null },
    })
    await update(
      `UPDATE job_queue SET status = 'running', progress = 30, step = 'embed', eta_seconds = 12 WHERE id = $1`,
      job.id,
    )
    expect((await stream.next()).json()).toEqual({
      type: 'step-change',
      data: { status: 'running', step: 'embed', previousStep: null },
    })
    expect((await stream.next()).json()).toEqual({
      type: 'progress-update',
      data: { progress: 30, currentStep: 'embed', estimatedTimeRemaining: 12 },
    })
    await update(
      `UPDATE job_queue SET status = 'completed', progress = 100, result = '{"ok":true}' WHERE id = $1`,
      job.id,
    )
    await stream.next() // progress-update to 100
    expect((await stream.next()).json()).toEqual({
      type: 'complete',
      data: { result: { ok: true } },
    })
    await stream.closed
    expect(stream.events.every((e) => e.event === 'message')).toBe(true)

    expect((await getJson(`/api/v1/jobs/${job.id}/status`, t.alice)).body).toMatchObject({
      jobId: job.id,
      status: 'completed',
      progress: 100,
      result: { ok: true },
      error: null,
    })
  })

  it('ends a failed job with failed {error, errorCode}', async () => {
    const t = newTenant()
    const job = await createJob(service, t.alice)
    const stream = await open(`/api/v1/jobs/${job.id}/stream`, { headers: bearer(t.alice) })
    await stream.next() // connected
    await update(
      `UPDATE job_queue SET status = 'failed', error = '{"message":"out of memory","code":"E_OOM"}' WHERE id = $1`,
      job.id,
    )
    let message: { type: string; data: unknown }
    do message = (await stream.next()).json()
    while (message.type !== 'failed')
    expect(message.data).toEqual({ error: 'out of memory', errorCode: 'E_OOM' })
    await stream.closed
  })
})

describe('jobs: GET /jobs/:id with a watch token', () => {
  it('polls the job document', async () => {
    const t = newTenant()
    const job = await createJob(service, t.alice)
    const compat = await getJson(`/jobs/${job.id}?token=${job.watch_token}`)
    const v1 = await getJson(`/v1/jobs/${job.id}`, t.alice)
    expect(compat.status).toBe(200)
    expect(compat.body).toEqual(v1.body)
    expect((await service.fetch(`/jobs/${job.id}`)).status).toBe(401)
  })

  it('streams JSON Patches with ?stream=true, and resumes from Last-Event-ID', async () => {
    const t = newTenant()
    const job = await createJob(service, t.alice)
    const path = `/jobs/${job.id}?stream=true&token=${job.watch_token}`
    const stream = await open(path)
    let doc = (await stream.next('snapshot')).json<Doc>()
    await update(`UPDATE job_queue SET status = 'running', progress = 10 WHERE id = $1`, job.id)
    const patch = await stream.next('patch')
    doc = fastJsonPatch.applyPatch(doc, patch.json<never[]>(), true, false).newDocument
    stream.close()
    await update(`UPDATE job_queue SET progress = 60 WHERE id = $1`, job.id)
    const resumed = await open(path, { headers: { 'last-event-id': patch.id! } })
    const missed = await resumed.next()
    expect(missed.event).toBe('patch') // the missed update, not a new snapshot
    doc = fastJsonPatch.applyPatch(doc, missed.json<never[]>(), true, false).newDocument
    expect(doc).toEqual((await getJson(`/v1/jobs/${job.id}`, t.alice)).body)
  })

  it('upgrades to a WebSocket on the same URL', async () => {
    const t = newTenant()
    const job = await createJob(service, t.alice)
    const url = `${service.url.replace(/^http/, 'ws')}/jobs/${job.id}?token=${job.watch_token}`
    const client = await openWs(url)
    try {
      expect(await client.next('snapshot')).toMatchObject({
        job: job.id,
        doc: { status: 'queued' },
      })
      await update(`UPDATE job_queue SET status = 'running' WHERE id = $1`, job.id)
      expect(await client.next('patch')).toMatchObject({ job: job.id })
    } finally {
      client.close()
    }
    const refused = await refusedUpgrade(url.replace(/\?.*/, ''))
    expect(refused.status).toBe(401)
  })
})

describe('every compatibility route', () => {
  const paths = (id: string) => [
    `/jobs/${id}`,
    `/jobs/${id}?stream=true`,
    `/api/jobs/${id}`,
    `/api/jobs/${id}/events`,
    `/api/queue/poll/${id}`,
    `/api/queue/poll/${id}/wait?timeout=0`,
    `/api/v1/jobs/${id}/stream`,
    `/api/v1/jobs/${id}/status`,
  ]

  it("answers another tenant's job with 404 and a malformed id with 400", async () => {
    const t = newTenant()
    const other = newTenant()
    const job = await createJob(service, t.alice)
    for (const path of paths(job.id)) {
      const res = await service.fetch(path, { token: other.admin })
      expect([path, res.status]).toEqual([path, 404])
      expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/)
    }
    for (const path of paths('not-a-uuid')) {
      const res = await service.fetch(path, { token: t.admin })
      expect([path, res.status]).toEqual([path, 400])
    }
    // As on /v1/jobs/:id: the socket opens, says 404 for its job and closes.
    const ws = await openWs(
      `${service.url.replace(/^http/, 'ws')}/jobs/${job.id}?token=${other.admin}`,
    )
    expect(await ws.next('error')).toMatchObject({ job: job.id, status: 404 })
    await ws.closed
    const malformed = await refusedUpgrade(
      `${service.url.replace(/^http/, 'ws')}/jobs/not-a-uuid?token=${t.admin}`,
    )
    expect(malformed.status).toBe(400)
  })

  it('does not exist without COMPAT_ROUTES', async () => {
    const off = await startTestService(database.url)
    try {
      const t = newTenant()
      const job = await createJob(off, t.admin)
      for (const path of paths(job.id)) {
        const res = await off.fetch(path, { token: t.admin })
        expect([path, res.status]).toEqual([path, 404])
        // The same request, on the instance with the switch, finds the job.
        const on = await service.fetch(path, { token: t.admin })
        expect([path, on.status]).toEqual([path, 200])
        await on.body?.cancel()
      }
      const ws = await refusedUpgrade(
        `${off.url.replace(/^http/, 'ws')}/jobs/${job.id}?token=${t.admin}`,
      )
      expect(ws.status).toBe(404)
    } finally {
      await off.close()
    }
  })
})

describe('COMPAT_ANONYMOUS_READ=true', () => {
  it('reads one job by its UUID without a token on the jobs routes, and opens nothing else', async () => {
    const raw: string[] = []
    const logger = createLogger({
      level: 'info',
      pretty: false,
      destination: { write: (line: string) => void raw.push(line) },
    })
    const anonymous = await startTestService(
      database.url,
      { COMPAT_ROUTES: 'jobs,api-jobs', COMPAT_ANONYMOUS_READ: 'true' },
      { logger },
    )
    try {
      const lines = () => raw.map((line) => JSON.parse(line) as Record<string, unknown>)
      expect(lines()).toContainEqual(
        expect.objectContaining({ level: 40, msg: expect.stringMatching(/COMPAT_ANONYMOUS_READ/) }),
      )
      const t = newTenant()
      const job = await createJob(anonymous, t.alice)
      const read = await getJson(`/jobs/${job.id}`, undefined, anonymous)
      expect(read.status).toBe(200)
      expect(read.body).toMatchObject({ id: job.id, status: 'queued' })
      const stream = await open(`/jobs/${job.id}?stream=true`, {}, anonymous)
      expect((await stream.next('snapshot')).json()).toMatchObject({ id: job.id })
      const ws = await openWs(`${anonymous.url.replace(/^http/, 'ws')}/jobs/${job.id}`)
      expect(await ws.next('snapshot')).toMatchObject({ job: job.id })
      ws.close()

      expect((await anonymous.fetch(`/jobs/${randomUUID()}`)).status).toBe(404)
      expect((await anonymous.fetch('/jobs/not-a-uuid')).status).toBe(400)
      // Nothing else opens without a token: not v1, not another section, not a write.
      expect((await anonymous.fetch(`/v1/jobs/${job.id}`)).status).toBe(401)
      expect((await anonymous.fetch(`/api/jobs/${job.id}`)).status).toBe(401)
      expect((await anonymous.fetch(`/api/jobs/${job.id}/events`)).status).toBe(401)
      const cancel = await anonymous.fetch(`/v1/jobs/${job.id}/cancel`, { method: 'POST' })
      expect(cancel.status).toBe(401)
      // A bad token is still refused, not read as anonymous.
      const bad = await anonymous.fetch(`/jobs/${job.id}?token=garbage-token`)
      expect(bad.status).toBe(401)
      // Its log line names the compat route and never the token.
      const id = bad.headers.get('x-request-id')!
      await until(
        () => lines().some((l) => (l.req as { id?: string } | undefined)?.id === id && 'res' in l),
        'the request log line',
      )
      const line = lines().find((l) => (l.req as { id?: string } | undefined)?.id === id)!
      expect(line.route).toBe('/jobs/:id')
      expect(JSON.stringify(line)).not.toContain('garbage-token')
    } finally {
      await anonymous.close()
    }
  })
})
