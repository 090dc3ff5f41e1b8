// Long-poll (docs/contract.md §8): GET /v1/jobs/:id/wait answers as soon as its condition holds (a
// version newer than `since`, or a terminal status), at once when it already holds, and
// with the current document and `jobwire-timed-out: true` on time-out. Bad parameters are
// 400s; a client that goes away frees its waiter; shutdown answers parked waiters.
import pg from 'pg'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import { createJob, newTenant, startTestService, type TestService } from '../helpers/service.js'
import { openSse } from '../helpers/sse.js'

type Doc = Record<string, unknown> & { version: number; status: string }

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

async function until(check: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

const parked = (svc: TestService = service) => svc.registry.countByKind('longpoll')

/** Starts a wait; resolves (with the pending response) once the server has parked it. */
async function parkWait(
  path: string,
  token: string,
  signal?: AbortSignal,
  svc = service,
): Promise<{ response: Promise<Response> }> {
  const before = parked(svc)
  const response = svc.fetch(path, { token, signal })
  response.catch(() => undefined) // an aborted wait rejects; the test awaits it when it cares
  await until(() => parked(svc) > before, 'the wait to park')
  return { response }
}

async function timed<T>(promise: Promise<T>): Promise<{ value: T; ms: number }> {
  const start = Date.now()
  const value = await promise
  return { value, ms: Date.now() - start }
}

describe('GET /v1/jobs/:id/wait', () => {
  it('wakes on a change newer than since', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    const { response: waiting } = await parkWait(
      `/v1/jobs/${job.id}/wait?since=1&timeout=20`,
      t.admin,
    )
    await sql.query(`UPDATE job_queue SET status = 'running', progress = 12 WHERE id = $1`, [
      job.id,
    ])
    const res = await waiting
    expect(res.status).toBe(200)
    expect(res.headers.get('jobwire-timed-out')).toBe('false')
    expect(res.headers.get('etag')).toBe('"2"')
    const doc = (await res.json()) as Doc
    expect(doc).toMatchObject({ id: job.id, version: 2, progress: 12, status: 'running' })
    expect(parked()).toBe(0)
  })

  it('without since, waits through progress for the terminal status', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    let settled = false
    const { response: waiting } = await parkWait(`/v1/jobs/${job.id}/wait?timeout=20`, t.admin)
    void waiting.then(() => (settled = true))
    // A watcher on the same job shows when the hub has delivered each change.
    const stream = await openSse(`${service.url}/v1/jobs/${job.id}/events`, {
      headers: { authorization: `Bearer ${t.admin}` },
    })
    await stream.next('snapshot')
    await sql.query(`UPDATE job_queue SET status = 'running', progress = 50 WHERE id = $1`, [
      job.id,
    ])
    await stream.next('patch')
    expect(settled).toBe(false)
    expect(parked()).toBe(1)
    await sql.query(`UPDATE job_queue SET status = 'completed', result = '"ok"' WHERE id = $1`, [
      job.id,
    ])
    const res = await waiting
    expect(res.headers.get('jobwire-timed-out')).toBe('false')
    expect(await res.json()).toMatchObject({ status: 'completed', result: 'ok', version: 3 })
    stream.close()
  })

  it('answers at once when the condition already holds', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    await sql.query(`UPDATE job_queue SET status = 'running' WHERE id = $1`, [job.id])
    const newer = await timed(service.fetch(`/v1/jobs/${job.id}/wait?since=1`, { token: t.admin }))
    expect(newer.ms).toBeLessThan(2_000)
    expect(newer.value.headers.get('jobwire-timed-out')).toBe('false')
    expect(await newer.value.json()).toMatchObject({ version: 2 })

    await sql.query(
      `UPDATE job_queue SET status = 'failed', error = '{"message":"x"}' WHERE id = $1`,
      [job.id],
    )
    const terminal = await timed(service.fetch(`/v1/jobs/${job.id}/wait`, { token: t.admin }))
    expect(terminal.ms).toBeLessThan(2_000)
    expect(terminal.value.headers.get('jobwire-timed-out')).toBe('false')
    expect(await terminal.value.json()).toMatchObject({ status: 'failed', error: { message: 'x' } })
  })

  it('answers at once when since is the final version of a finished job', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    await sql.query(`UPDATE job_queue SET status = 'cancelled' WHERE id = $1`, [job.id])
    // Nothing newer can come: the answer does not wait out the 30 s timeout.
    const final = await timed(
      service.fetch(`/v1/jobs/${job.id}/wait?since=2&timeout=30`, { token: t.admin }),
    )
    expect(final.ms).toBeLessThan(2_000)
    expect(final.value.headers.get('jobwire-timed-out')).toBe('false')
    expect(await final.value.json()).toMatchObject({ status: 'cancelled', version: 2 })
  })

  it('times out with the current document and jobwire-timed-out: true', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    await sql.query(`UPDATE job_queue SET status = 'running', progress = 5 WHERE id = $1`, [job.id])
    const { value: res, ms } = await timed(
      service.fetch(`/v1/jobs/${job.id}/wait?since=2&timeout=1`, { token: t.admin }),
    )
    expect(ms).toBeGreaterThanOrEqual(950)
    expect(ms).toBeLessThan(3_000)
    expect(res.status).toBe(200)
    expect(res.headers.get('jobwire-timed-out')).toBe('true')
    expect(await res.json()).toMatchObject({ version: 2, progress: 5 })
    expect(parked()).toBe(0)
    expect(service.hub.watchedJobs).toBe(0)
  })

  it('answers at once with timeout=0', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    const { value: res, ms } = await timed(
      service.fetch(`/v1/jobs/${job.id}/wait?since=1&timeout=0`, { token: t.admin }),
    )
    expect(ms).toBeLessThan(1_000)
    expect(res.status).toBe(200)
    expect(res.headers.get('jobwire-timed-out')).toBe('true')
    expect(await res.json()).toMatchObject({ id: job.id, version: 1 })
  })

  it('accepts the largest timeout and the token in ?token=', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    const res = await fetch(
      `${service.url}/v1/jobs/${job.id}/wait?since=0&timeout=60&token=${t.admin}`,
    )
    expect(res.status).toBe(200)
    expect(res.headers.get('jobwire-timed-out')).toBe('false')
  })

  it.each([
    ['timeout=-1', 'timeout'],
    ['timeout=61', 'timeout'],
    ['timeout=abc', 'timeout'],
    ['timeout=', 'timeout'],
    ['timeout=1&timeout=2', 'timeout'],
    ['since=abc', 'since'],
    ['since=-1', 'since'],
    ['sinse=1', 'sinse'],
    ['timeout=5&format=full', 'format'],
  ])('answers 400 to ?%s', async (query, field) => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    const res = await service.fetch(`/v1/jobs/${job.id}/wait?${query}`, { token: t.admin })
    expect(res.status).toBe(400)
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/)
    expect(JSON.stringify(await res.json())).toContain(field)
    expect(parked()).toBe(0)
  })

  it("answers 404 for another tenant's job and 401 without a token", async () => {
    const owner = newTenant()
    const other = newTenant()
    const job = await createJob(service, owner.admin)
    const res = await service.fetch(`/v1/jobs/${job.id}/wait?timeout=5`, { token: other.admin })
    expect(res.status).toBe(404)
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/)
    expect((await fetch(`${service.url}/v1/jobs/${job.id}/wait`)).status).toBe(401)
    expect(service.hub.watchedJobs).toBe(0)
  })

  it('answers 404 when the job is deleted while waiting', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    const { response: waiting } = await parkWait(
      `/v1/jobs/${job.id}/wait?since=1&timeout=20`,
      t.admin,
    )
    await sql.query(`DELETE FROM job_queue WHERE id = $1`, [job.id])
    const res = await waiting
    expect(res.status).toBe(404)
    await until(() => parked() === 0 && service.hub.watchedJobs === 0, 'the waiter to be freed')
  })

  it('frees the waiter when the client aborts', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    const controller = new AbortController()
    const { response: waiting } = await parkWait(
      `/v1/jobs/${job.id}/wait?since=1&timeout=30`,
      t.admin,
      controller.signal,
    )
    expect(service.hub.watchedJobs).toBe(1)
    controller.abort()
    await expect(waiting).rejects.toThrow()
    await until(
      () => service.registry.size === 0 && service.hub.watchedJobs === 0,
      'the aborted waiter to be freed',
    )
  })
})

describe('graceful shutdown', () => {
  it('answers parked waiters with the current document and ends streams', async () => {
    const stopping = await startTestService(database.url)
    const t = newTenant()
    const job = await createJob(stopping, t.admin)
    const { response: waiting } = await parkWait(
      `/v1/jobs/${job.id}/wait?since=1&timeout=30`,
      t.admin,
      undefined,
      stopping,
    )
    const stream = await openSse(`${stopping.url}/v1/jobs/${job.id}/events`, {
      headers: { authorization: `Bearer ${t.admin}` },
    })
    await stream.next('snapshot')
    const closing = stopping.close()
    const res = await waiting
    expect(res.status).toBe(200)
    expect(res.headers.get('jobwire-timed-out')).toBe('true')
    expect(await res.json()).toMatchObject({ id: job.id, version: 1 })
    await stream.closed
    await closing
    expect(stopping.registry.size).toBe(0)
  })
})
