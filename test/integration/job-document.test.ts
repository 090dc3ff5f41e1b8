// What a user sees of a job while workers retry it, as the API and the streams show it: the
// error of a failed attempt (`last_error`) while the job waits and runs again, nothing of it
// once the job completed, progress with at most 2 decimals and no time left on a finished job
// (docs/api.md, "The job document"; migrations/1764000000006_values-users-see.sql). Workers
// here are SQL sessions calling the worker functions, as any worker does.
import { randomUUID } from 'node:crypto'
import fastJsonPatch, { type Operation } from 'fast-json-patch'
import pg from 'pg'
import type { JobDocument } from '../../src/protocol/job.js'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import { createJob, newTenant, startTestService, type TestService } from '../helpers/service.js'
import { openSse, type SseClient } from '../helpers/sse.js'

let database: TestDatabase
let service: TestService
let pool: pg.Pool
const streams: SseClient[] = []

beforeAll(async () => {
  database = await createTestDatabase()
  service = await startTestService(database.url)
  pool = new pg.Pool({ connectionString: database.url, max: 3 })
})
afterEach(() => {
  for (const stream of streams.splice(0)) stream.close()
})
afterAll(async () => {
  await service?.close()
  await pool?.end()
  await database?.drop()
})

const TIMEOUT_ERROR = { message: 'upstream timed out', code: 'timeout' }

async function read(id: string, token: string): Promise<JobDocument> {
  const res = await service.fetch(`/v1/jobs/${id}`, { token })
  expect(res.status).toBe(200)
  return (await res.json()) as JobDocument
}

async function watch(id: string, token: string, format = 'patch'): Promise<SseClient> {
  const stream = await openSse(`${service.url}/v1/jobs/${id}/events?format=${format}`, {
    headers: { authorization: `Bearer ${token}` },
  })
  expect(stream.status).toBe(200)
  streams.push(stream)
  return stream
}

/** The next patch applied to `doc`: the document as the SSE client holds it. */
async function nextPatched(stream: SseClient, doc: JobDocument): Promise<JobDocument> {
  const patch = (await stream.next('patch')).json<Operation[]>()
  expect(patch[0]).toEqual({ op: 'test', path: '/version', value: doc.version })
  return fastJsonPatch.applyPatch(doc, patch, true, false).newDocument
}

/** A worker's claim of one job of `type` (each test has its own type). */
async function claim(type: string, worker: string): Promise<string> {
  const { rows } = await pool.query<{ id: string }>(
    'SELECT id FROM jobwire_claim($1, ARRAY[$2], 1, 30)',
    [worker, type],
  )
  expect(rows).toHaveLength(1)
  return rows[0]!.id
}

describe('a job that is retried', () => {
  it('shows the failed attempt as last_error while it waits and runs again, and drops it on success', async () => {
    const t = newTenant()
    const type = `retried-${randomUUID().slice(0, 8)}`
    const job = await createJob(service, t.admin, { type, max_attempts: 3 })
    const stream = await watch(job.id, t.admin)
    let doc = (await stream.next('snapshot')).json<JobDocument>()
    expect(doc).toMatchObject({ status: 'queued', error: null, last_error: null, attempts: 0 })

    await claim(type, 'w1')
    doc = await nextPatched(stream, doc)
    expect(doc).toMatchObject({ status: 'running', attempts: 1, last_error: null })

    // A retryable failure: back in the queue, due in 0 s so the test need not wait.
    await pool.query('SELECT jobwire_fail($1, $2, $3, $4, true, 0)', [
      job.id,
      'w1',
      TIMEOUT_ERROR.message,
      TIMEOUT_ERROR.code,
    ])
    doc = await nextPatched(stream, doc)
    expect(doc).toMatchObject({
      status: 'queued',
      attempts: 1,
      error: null, // not failed: error is only for a job that failed for good
      last_error: TIMEOUT_ERROR,
    })
    // Every read says the same as the stream.
    expect(await read(job.id, t.admin)).toEqual(doc)
    const list = (await (
      await service.fetch(`/v1/jobs?type=${type}`, { token: t.admin })
    ).json()) as {
      data: JobDocument[]
    }
    expect(list.data).toEqual([doc])
    const waited = await service.fetch(`/v1/jobs/${job.id}/wait?since=0&timeout=1`, {
      token: t.admin,
    })
    expect(await waited.json()).toEqual(doc)

    // The next attempt runs with the previous attempt's error still showing.
    await claim(type, 'w2')
    doc = await nextPatched(stream, doc)
    expect(doc).toMatchObject({ status: 'running', attempts: 2, last_error: TIMEOUT_ERROR })

    await pool.query('SELECT jobwire_complete($1, $2, $3)', [job.id, 'w2', { ok: true }])
    doc = await nextPatched(stream, doc)
    expect(doc).toMatchObject({
      status: 'completed',
      result: { ok: true },
      error: null,
      last_error: null,
      attempts: 2,
      eta_seconds: 0,
    })
    expect(await read(job.id, t.admin)).toEqual(doc)
    const { rows } = await pool.query('SELECT error FROM job_queue WHERE id = $1', [job.id])
    expect(rows).toEqual([{ error: null }])
  })

  it('shows the final error as both error and last_error once it failed for good', async () => {
    const t = newTenant()
    const type = `failing-${randomUUID().slice(0, 8)}`
    const job = await createJob(service, t.admin, { type, max_attempts: 1 })
    await claim(type, 'w1')
    await pool.query('SELECT jobwire_progress($1, $2, 40, $3, 6)', [job.id, 'w1', 'uploading'])
    await pool.query('SELECT jobwire_fail($1, $2, $3, $4)', [
      job.id,
      'w1',
      TIMEOUT_ERROR.message,
      TIMEOUT_ERROR.code,
    ])
    expect(await read(job.id, t.admin)).toMatchObject({
      status: 'failed',
      progress: 40, // how far it got
      step: 'uploading',
      eta_seconds: 0, // but no time left
      error: TIMEOUT_ERROR,
      last_error: TIMEOUT_ERROR,
    })
  })

  it('tells a typed-events client which attempt comes next and why the last one failed', async () => {
    const t = newTenant()
    const type = `typed-${randomUUID().slice(0, 8)}`
    const job = await createJob(service, t.admin, { type, max_attempts: 2 })
    const stream = await watch(job.id, t.admin, 'events')
    await stream.next('connected')
    expect((await stream.next('status-change')).json()).toEqual({
      jobId: job.id,
      status: 'queued',
      previousStatus: null,
      attempts: 0,
      maxAttempts: 2,
      lastError: null,
      lastErrorCode: null,
    })
    await claim(type, 'w1')
    expect((await stream.next('status-change')).json()).toMatchObject({
      status: 'running',
      attempts: 1,
    })
    await pool.query('SELECT jobwire_fail($1, $2, $3, $4, true, 60)', [
      job.id,
      'w1',
      TIMEOUT_ERROR.message,
      TIMEOUT_ERROR.code,
    ])
    expect((await stream.next('status-change')).json()).toEqual({
      jobId: job.id,
      status: 'queued',
      previousStatus: 'running',
      attempts: 1,
      maxAttempts: 2,
      lastError: 'upstream timed out',
      lastErrorCode: 'timeout',
    })
  })
})

describe('numbers as users see them', () => {
  it('shows progress with at most 2 decimals, whatever the worker computed', async () => {
    const t = newTenant()
    const type = `precise-${randomUUID().slice(0, 8)}`
    const job = await createJob(service, t.admin, { type })
    await claim(type, 'w1')
    const stream = await watch(job.id, t.admin)
    let doc = (await stream.next('snapshot')).json<JobDocument>()
    // 11 of 40 steps done, computed the usual way: 27.500000000000004.
    await pool.query('SELECT jobwire_progress($1, $2, $3)', [job.id, 'w1', (11 / 40) * 100])
    doc = await nextPatched(stream, doc)
    expect(doc.progress).toBe(27.5)
    expect((await read(job.id, t.admin)).progress).toBe(27.5)
  })

  it('shows no time left and no stale error for rows written before the trigger rounded them', async () => {
    // Rows as an older version of the trigger left them: a cancelled job with an ETA and a
    // completed one with the error of an earlier attempt. Written with the trigger off, as
    // only a migration could.
    const t = newTenant()
    const cancelled = await createJob(service, t.admin)
    const completed = await createJob(service, t.admin)
    const client = await pool.connect()
    try {
      await client.query('BEGIN')
      await client.query('ALTER TABLE job_queue DISABLE TRIGGER job_queue_before_write')
      await client.query(
        `UPDATE job_queue SET status = 'cancelled', eta_seconds = 6, error = $2 WHERE id = $1`,
        [cancelled.id, TIMEOUT_ERROR],
      )
      await client.query(
        `UPDATE job_queue SET status = 'completed', eta_seconds = 6, error = $2 WHERE id = $1`,
        [completed.id, TIMEOUT_ERROR],
      )
      await client.query('ALTER TABLE job_queue ENABLE TRIGGER job_queue_before_write')
      await client.query('COMMIT')
    } catch (error) {
      await client.query('ROLLBACK')
      throw error
    } finally {
      client.release()
    }
    expect(await read(cancelled.id, t.admin)).toMatchObject({
      status: 'cancelled',
      eta_seconds: 0,
      error: null,
      last_error: TIMEOUT_ERROR,
    })
    expect(await read(completed.id, t.admin)).toMatchObject({
      status: 'completed',
      eta_seconds: 0,
      error: null,
      last_error: null,
    })
  })
})
