// Server-Sent Events on one job (docs/contract.md §7), as a client meets them: a change committed
// by anyone (here a plain SQL UPDATE, as a worker in any language would make) arrives as a patch
// that turns the client's copy into the row GET returns; headers, routes, auth, formats, the
// terminal `end`, heartbeats, and that a disconnect frees everything.
import fastJsonPatch, { type Operation } from 'fast-json-patch'
import pg from 'pg'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import {
  createJob,
  newTenant,
  startTestService,
  tokenFor,
  type TestService,
} from '../helpers/service.js'
import { openSse, type SseClient } from '../helpers/sse.js'

type Doc = Record<string, unknown> & { version: number }

let database: TestDatabase
let service: TestService
let sql: pg.Client
const clients: SseClient[] = []

beforeAll(async () => {
  database = await createTestDatabase()
  service = await startTestService(database.url, { SSE_HEARTBEAT_MS: '1000' })
  sql = new pg.Client({ connectionString: database.url })
  await sql.connect()
})
afterEach(async () => {
  for (const client of clients.splice(0)) client.close()
})
afterAll(async () => {
  await sql?.end()
  await service?.close()
  await database?.drop()
})

async function open(path: string, init: RequestInit = {}): Promise<SseClient> {
  const client = await openSse(service.url + path, init)
  clients.push(client)
  return client
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

async function getJob(id: string, token: string): Promise<Doc> {
  const res = await service.fetch(`/v1/jobs/${id}`, { token })
  expect(res.status).toBe(200)
  return (await res.json()) as Doc
}

/** Applies a patch the way a client must: validated, and failing on a wrong base. */
function applyPatch(doc: Doc, patch: Operation[]): Doc {
  expect(patch[0]).toEqual({ op: 'test', path: '/version', value: doc.version })
  return fastJsonPatch.applyPatch(doc, patch, true, false).newDocument
}

async function until(check: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

describe('SSE on one job', () => {
  it('turns direct SQL updates into patches that reproduce the row, up to the result', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    const stream = await open(`/v1/jobs/${job.id}/events`, { headers: bearer(t.admin) })
    expect(stream.status).toBe(200)
    const snapshot = await stream.next('snapshot')
    let doc = snapshot.json<Doc>()
    expect(doc).toEqual(await getJob(job.id, t.admin))
    expect(snapshot.id).toBe(String(doc.version))

    const steps = [
      `UPDATE job_queue SET status = 'running', attempts = 1, step = 'download' WHERE id = $1`,
      `UPDATE job_queue SET progress = 37.5, step = 'transcode', eta_seconds = 42 WHERE id = $1`,
      `UPDATE job_queue SET progress = 80, eta_seconds = 5 WHERE id = $1`,
      `UPDATE job_queue SET status = 'completed', progress = 100,
         result = '{"url":"https://cdn.example/out.mp4","frames":[1,2,3]}' WHERE id = $1`,
    ]
    for (const statement of steps) {
      await sql.query(statement, [job.id])
      const patch = await stream.next('patch')
      doc = applyPatch(doc, patch.json<Operation[]>())
      expect(patch.id).toBe(String(doc.version))
      expect(doc).toEqual(await getJob(job.id, t.admin))
    }
    expect(doc).toMatchObject({
      status: 'completed',
      result: { url: 'https://cdn.example/out.mp4', frames: [1, 2, 3] },
      error: null,
      version: 5,
    })
    await stream.next('end')
    await stream.closed
  })

  it('carries the error of a failed job in its last patch', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    const stream = await open(`/v1/jobs/${job.id}/events`, { headers: bearer(t.admin) })
    let doc = (await stream.next('snapshot')).json<Doc>()
    await sql.query(`UPDATE job_queue SET status = 'running', progress = 10 WHERE id = $1`, [
      job.id,
    ])
    doc = applyPatch(doc, (await stream.next('patch')).json())
    await sql.query(
      `UPDATE job_queue SET status = 'failed',
         error = '{"message":"codec not supported","code":"E_CODEC"}' WHERE id = $1`,
      [job.id],
    )
    doc = applyPatch(doc, (await stream.next('patch')).json())
    expect(doc).toEqual(await getJob(job.id, t.admin))
    expect(doc).toMatchObject({
      status: 'failed',
      error: { message: 'codec not supported', code: 'E_CODEC' },
    })
    await stream.next('end')
  })

  it('sends the SSE headers and a retry line before anything else', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    const controller = new AbortController()
    const res = await fetch(`${service.url}/v1/jobs/${job.id}/events`, {
      headers: bearer(t.admin),
      signal: controller.signal,
    })
    try {
      expect(res.status).toBe(200)
      expect(res.headers.get('content-type')).toMatch(/^text\/event-stream\b/)
      expect(res.headers.get('cache-control')).toBe('no-cache, no-transform')
      expect(res.headers.get('x-accel-buffering')).toBe('no')
      expect(res.headers.get('content-encoding')).toBeNull()
      const reader = res.body!.getReader()
      let text = ''
      while (!text.includes('event: snapshot')) {
        const { value, done } = await reader.read()
        if (done) break
        text += new TextDecoder().decode(value)
      }
      expect(text).toMatch(/^retry: \d+\n\n/)
      expect(text.indexOf('retry:')).toBeLessThan(text.indexOf('event: snapshot'))
    } finally {
      controller.abort()
    }
  })

  it('streams the same events from GET /v1/jobs/:id with Accept or ?stream=true', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    const streams = await Promise.all([
      open(`/v1/jobs/${job.id}/events`, { headers: bearer(t.admin) }),
      open(`/v1/jobs/${job.id}`, {
        headers: { ...bearer(t.admin), accept: 'text/event-stream' },
      }),
      open(`/v1/jobs/${job.id}?stream=true`, { headers: bearer(t.admin) }),
    ])
    for (const s of streams) {
      expect(s.status).toBe(200)
      expect(s.headers.get('content-type')).toMatch(/^text\/event-stream\b/)
    }
    const snapshots = await Promise.all(streams.map((s) => s.next('snapshot')))
    for (const s of snapshots) expect(s.json()).toEqual(snapshots[0]!.json())
    await sql.query(`UPDATE job_queue SET status = 'running', progress = 5 WHERE id = $1`, [job.id])
    const patches = await Promise.all(streams.map((s) => s.next('patch')))
    for (const p of patches) {
      expect(p.data).toBe(patches[0]!.data)
      expect(p.id).toBe(patches[0]!.id)
    }
  })

  it('accepts the token in ?token= on the stream routes', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    const a = await open(`/v1/jobs/${job.id}/events?token=${t.admin}`)
    const b = await open(`/v1/jobs/${job.id}?stream=true&token=${t.admin}`)
    const c = await open(`/v1/jobs/${job.id}/events?token=${job.watch_token as string}`)
    for (const s of [a, b, c]) {
      expect(s.status).toBe(200)
      expect((await s.next('snapshot')).json()).toMatchObject({ id: job.id })
    }
  })

  describe('decides 401 and 404 before any stream byte', () => {
    async function expectProblem(res: Response, status: number) {
      expect(res.status).toBe(status)
      expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/)
      const body = (await res.json()) as { status: number; type: string }
      expect(body.status).toBe(status)
      return body
    }

    it('401 without a token, with a bad token, or with another secret', async () => {
      const t = newTenant()
      const job = await createJob(service, t.admin)
      const url = `${service.url}/v1/jobs/${job.id}/events`
      await expectProblem(await fetch(url), 401)
      await expectProblem(await fetch(url, { headers: bearer('not-a-jwt') }), 401)
      await expectProblem(await fetch(`${url}?token=not-a-jwt`), 401)
      const forged = tokenFor(
        { tenantId: t.tenantId },
        {},
        'another-secret-another-secret-0123456789',
      )
      await expectProblem(await fetch(url, { headers: bearer(forged) }), 401)
      await expectProblem(
        await fetch(`${service.url}/v1/jobs/${job.id}`, {
          headers: { accept: 'text/event-stream' },
        }),
        401,
      )
    })

    it("returns 404, not 403, for another tenant's job and for a missing one", async () => {
      const owner = newTenant()
      const other = newTenant()
      const job = await createJob(service, owner.admin)
      const missing = '00000000-0000-4000-8000-000000000000'
      for (const path of [
        `/v1/jobs/${job.id}/events`,
        `/v1/jobs/${job.id}?stream=true`,
        `/v1/jobs/${missing}/events`,
      ]) {
        const body = await expectProblem(
          await fetch(service.url + path, { headers: bearer(other.admin) }),
          404,
        )
        expect(body.type).toMatch(/job-not-found$/)
      }
      // A member of the same tenant who does not own the job sees nothing either.
      await expectProblem(
        await fetch(`${service.url}/v1/jobs/${job.id}/events`, { headers: bearer(owner.bob) }),
        404,
      )
      await until(() => service.hub.watchedJobs === 0, 'no watch left behind by a 404')
    })

    it('400 for an unknown format', async () => {
      const t = newTenant()
      const job = await createJob(service, t.admin)
      await expectProblem(
        await fetch(`${service.url}/v1/jobs/${job.id}/events?format=xml`, {
          headers: bearer(t.admin),
        }),
        400,
      )
    })
  })

  it('format=full sends the whole document each time', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    const stream = await open(`/v1/jobs/${job.id}/events?format=full`, {
      headers: bearer(t.admin),
    })
    expect((await stream.next('snapshot')).json()).toEqual(await getJob(job.id, t.admin))
    await sql.query(`UPDATE job_queue SET status = 'running', progress = 20 WHERE id = $1`, [
      job.id,
    ])
    const second = await stream.next('snapshot')
    expect(second.json()).toEqual(await getJob(job.id, t.admin))
    expect(second.id).toBe('2')
    await sql.query(`UPDATE job_queue SET status = 'completed', result = '42' WHERE id = $1`, [
      job.id,
    ])
    expect((await stream.next('snapshot')).json()).toMatchObject({
      status: 'completed',
      result: 42,
    })
    await stream.next('end')
    expect(stream.events.map((e) => e.event)).toEqual(['snapshot', 'snapshot', 'snapshot', 'end'])
  })

  describe('format=events', () => {
    it('sends connected first, then progress, step changes and complete', async () => {
      const t = newTenant()
      const job = await createJob(service, t.admin)
      const stream = await open(`/v1/jobs/${job.id}/events?format=events`, {
        headers: bearer(t.admin),
      })
      const connected = await stream.next()
      expect(connected.event).toBe('connected')
      expect(connected.json()).toEqual({ connectionId: expect.any(String), jobId: job.id })

      await sql.query(
        `UPDATE job_queue SET status = 'running', progress = 25, step = 'resize', eta_seconds = 30
           WHERE id = $1`,
        [job.id],
      )
      expect((await stream.next('step-change')).json()).toMatchObject({ step: 'resize' })
      expect((await stream.next('progress-update')).json()).toMatchObject({
        progress: 25,
        currentStep: 'resize',
        estimatedTimeRemaining: 30,
      })
      await sql.query(`UPDATE job_queue SET progress = 60, eta_seconds = 12 WHERE id = $1`, [
        job.id,
      ])
      expect((await stream.next('progress-update')).json()).toMatchObject({
        progress: 60,
        currentStep: 'resize',
        estimatedTimeRemaining: 12,
      })
      await sql.query(
        `UPDATE job_queue SET status = 'completed', progress = 100, result = '{"ok":true}'
           WHERE id = $1`,
        [job.id],
      )
      expect((await stream.next('complete')).json()).toMatchObject({ result: { ok: true } })
      await stream.next('end')
      await stream.closed
      // Only the vocabulary of docs/contract.md §7 (plus status-change) and the final end.
      const names = new Set(stream.events.map((e) => e.event))
      for (const name of names)
        expect([
          'connected',
          'status-change',
          'progress-update',
          'step-change',
          'complete',
          'end',
        ]).toContain(name)
    })

    it('sends failed with the error message and code', async () => {
      const t = newTenant()
      const job = await createJob(service, t.admin)
      const stream = await open(`/v1/jobs/${job.id}/events?format=events`, {
        headers: bearer(t.admin),
      })
      await stream.next('connected')
      await sql.query(
        `UPDATE job_queue SET status = 'failed', error = '{"message":"out of memory","code":"OOM"}'
           WHERE id = $1`,
        [job.id],
      )
      expect((await stream.next('failed')).json()).toMatchObject({
        error: 'out of memory',
        errorCode: 'OOM',
      })
      await stream.next('end')
    })

    it('sends cancelled when the job is cancelled through the API', async () => {
      const t = newTenant()
      const job = await createJob(service, t.admin)
      const stream = await open(`/v1/jobs/${job.id}/events?format=events`, {
        headers: bearer(t.admin),
      })
      await stream.next('connected')
      const res = await service.fetch(`/v1/jobs/${job.id}/cancel`, {
        method: 'POST',
        token: t.admin,
      })
      expect(res.status).toBe(200)
      expect((await stream.next('cancelled')).json()).toMatchObject({ jobId: job.id })
      await stream.next('end')
    })
  })

  describe('at a terminal status', () => {
    it('sends the final change, then end, then closes; the final version gets 204', async () => {
      const t = newTenant()
      const job = await createJob(service, t.admin)
      const stream = await open(`/v1/jobs/${job.id}/events`, { headers: bearer(t.admin) })
      let doc = (await stream.next('snapshot')).json<Doc>()
      await sql.query(
        `UPDATE job_queue SET status = 'completed', result = '"done"' WHERE id = $1`,
        [job.id],
      )
      const last = await stream.next('patch')
      doc = applyPatch(doc, last.json())
      const end = await stream.next('end')
      await stream.closed
      expect(stream.events.map((e) => e.event)).toEqual(['snapshot', 'patch', 'end'])
      expect(end.json()).toMatchObject({ version: doc.version, status: 'completed' })

      const again = await fetch(`${service.url}/v1/jobs/${job.id}/events`, {
        headers: { ...bearer(t.admin), 'last-event-id': last.id! },
      })
      expect(again.status).toBe(204)
      expect(await again.text()).toBe('')
      const byQuery = await fetch(
        `${service.url}/v1/jobs/${job.id}/events?lastEventId=${last.id!}&token=${t.admin}`,
      )
      expect(byQuery.status).toBe(204)
    })

    it('gives a client that has not seen the final version a snapshot, then end', async () => {
      const t = newTenant()
      const job = await createJob(service, t.admin)
      await sql.query(`UPDATE job_queue SET status = 'cancelled' WHERE id = $1`, [job.id])
      const fresh = await open(`/v1/jobs/${job.id}/events`, { headers: bearer(t.admin) })
      expect((await fresh.next('snapshot')).json()).toMatchObject({ status: 'cancelled' })
      await fresh.next('end')
      await fresh.closed
      const behind = await open(`/v1/jobs/${job.id}/events`, {
        headers: { ...bearer(t.admin), 'last-event-id': '1' },
      })
      expect(behind.status).toBe(200)
      const first = await behind.next()
      expect(['patch', 'snapshot']).toContain(first.event)
      await behind.next('end')
      await behind.closed
    })
  })

  it('never misses or repeats a change committed while streams open', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    const updates = 120
    const writer = (async () => {
      for (let i = 1; i <= updates; i++)
        await sql.query(`UPDATE job_queue SET status = 'running', progress = $2 WHERE id = $1`, [
          job.id,
          (i * 100) / updates,
        ])
    })()
    // Streams open one after another while the writer commits; each must see a gapless,
    // repeat-free run from its snapshot (every patch's test op checks its base).
    const streams: SseClient[] = []
    for (let i = 0; i < 12; i++) {
      streams.push(await open(`/v1/jobs/${job.id}/events`, { headers: bearer(t.admin) }))
      await new Promise((resolve) => setImmediate(resolve))
    }
    await writer
    const final = await getJob(job.id, t.admin)
    expect(final.version).toBe(updates + 1)
    for (const stream of streams) {
      let doc = (await stream.next('snapshot')).json<Doc>()
      while (doc.version < final.version) doc = applyPatch(doc, (await stream.next('patch')).json())
      expect(doc).toEqual(final)
    }
  })

  it('ends the stream when the job is deleted', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    const stream = await open(`/v1/jobs/${job.id}/events`, { headers: bearer(t.admin) })
    await stream.next('snapshot')
    await sql.query(`DELETE FROM job_queue WHERE id = $1`, [job.id])
    expect((await stream.next('end')).json()).toEqual({
      type: 'end',
      job: job.id,
      version: job.version,
      status: 'deleted',
    })
    await stream.closed
  })

  it('sends a heartbeat comment to an idle stream', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    const stream = await open(`/v1/jobs/${job.id}/events`, { headers: bearer(t.admin) })
    await stream.next('snapshot')
    await until(() => stream.comments > 0, 'a heartbeat comment', 5_000)
    expect(stream.events.map((e) => e.event)).toEqual(['snapshot'])
  })

  it('frees the watch and the registry entry as soon as the client goes away', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    const streams = await Promise.all(
      [1, 2, 3].map(() => open(`/v1/jobs/${job.id}/events`, { headers: bearer(t.admin) })),
    )
    await Promise.all(streams.map((s) => s.next('snapshot')))
    expect(service.hub.watchedJobs).toBe(1)
    expect(service.registry.size).toBe(3)
    for (const s of streams) s.close()
    await until(
      () => service.hub.watchedJobs === 0 && service.registry.size === 0,
      'watches and streams to be freed',
    )
    expect(service.hub.watcherCount).toBe(0)
  })
})
