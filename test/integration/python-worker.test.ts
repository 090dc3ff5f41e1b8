// The Python example worker (examples/python/worker.py, psycopg 3) against the real database,
// seen the way a user sees it: jobs created through the API, watched through the API and an
// SSE stream. The worker logs in as its own role, a member of jobwire_worker whose sessions
// start as that role (docs/worker-contract.md §1), and runs as a separate process: claim,
// progress, complete, retry with backoff, final failure, cancel, graceful stop on SIGTERM.
//
// Without Debian's python3 and python3-psycopg the file reports itself skipped, with the
// reason, and the rest of the suite runs; under CI=true it fails instead.
import { randomUUID } from 'node:crypto'
import fastJsonPatch, { type Operation } from 'fast-json-patch'
import pg from 'pg'
import type { JobDocument } from '../../src/protocol/job.js'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import { findPsycopg, startPythonWorker, type PythonWorker } from '../helpers/python-worker.js'
import { createJob, newTenant, startTestService, type TestService } from '../helpers/service.js'
import { openSse, type SseClient } from '../helpers/sse.js'
import { until } from '../helpers/ws.js'
import { requiresTool } from '../helpers/requires.js'
import { createWorkerLogin, type WorkerLogin } from '../helpers/worker-login.js'

const { describe: d } = requiresTool('python3-psycopg', await findPsycopg(), import.meta.url)

const TYPE = `py-${randomUUID().slice(0, 8)}`

let database: TestDatabase
let service: TestService
let login: WorkerLogin
let worker: PythonWorker
let sql: pg.Client
const tenant = newTenant()
const streams: SseClient[] = []

async function read(id: string): Promise<JobDocument> {
  const res = await service.fetch(`/v1/jobs/${id}`, { token: tenant.admin })
  expect(res.status).toBe(200)
  return (await res.json()) as JobDocument
}

/** Long-poll until the job is terminal (the worker is polling too: allow a few seconds). */
async function finished(id: string): Promise<JobDocument> {
  for (let i = 0; i < 3; i++) {
    const res = await service.fetch(`/v1/jobs/${id}/wait?timeout=10`, { token: tenant.admin })
    const doc = (await res.json()) as JobDocument
    if (res.headers.get('jobwire-timed-out') !== 'true') return doc
  }
  throw new Error(`job ${id} did not finish; worker log:\n${worker.output()}`)
}

/** Every document an SSE client holds, snapshot then patched, until `until` holds. */
async function watchUntil(
  id: string,
  until: (doc: JobDocument) => boolean,
): Promise<JobDocument[]> {
  const stream = await openSse(`${service.url}/v1/jobs/${id}/events`, {
    headers: { authorization: `Bearer ${tenant.admin}` },
  })
  streams.push(stream)
  expect(stream.status).toBe(200)
  let doc = (await stream.next('snapshot', 15_000)).json<JobDocument>()
  const seen = [doc]
  while (!until(doc)) {
    const event = await stream.next(undefined, 15_000).catch((error: unknown) => {
      throw new Error(`${String(error)}; worker log:\n${worker.output()}`)
    })
    if (event.event === 'snapshot') doc = event.json<JobDocument>()
    else if (event.event === 'patch')
      doc = fastJsonPatch.applyPatch(doc, event.json<Operation[]>(), true, false).newDocument
    else continue
    seen.push(doc)
  }
  return seen
}

function create(payload: Record<string, unknown>, maxAttempts = 3) {
  return createJob(service, tenant.admin, { type: TYPE, payload, max_attempts: maxAttempts })
}

d('the Python example worker', () => {
  beforeAll(async () => {
    database = await createTestDatabase()
    service = await startTestService(database.url)
    sql = new pg.Client({ connectionString: database.url })
    await sql.connect()
    login = await createWorkerLogin(database.url, { defaultRole: true })
    worker = startPythonWorker({
      DATABASE_URL: login.url(database.url),
      WORKER_TYPES: TYPE,
      WORKER_LEASE_SECONDS: '3', // a heartbeat every second
      WORKER_GRACE_SECONDS: '0.3',
      WORKER_POLL_SECONDS: '0.05',
      WORKER_MAX_POLL_SECONDS: '0.2',
    })
  })
  afterEach(() => {
    for (const stream of streams.splice(0)) stream.close()
  })
  afterAll(async () => {
    for (const stream of streams.splice(0)) stream.close()
    await worker?.stop('SIGKILL')
    await sql?.end()
    await service?.close()
    await database?.drop()
    await login?.drop()
  })

  it('completes a job, its progress reaching an SSE watcher on the way', async () => {
    const job = await create({ steps: 8, step_seconds: 0.1 })
    const seen = await watchUntil(job.id, (doc) => doc.status === 'completed')
    expect(
      seen.some((doc) => doc.status === 'running' && doc.progress > 0 && doc.progress < 100),
    ).toBe(true)
    expect(seen.some((doc) => doc.step?.startsWith('step '))).toBe(true)
    // Progress only moves forward.
    const progress = seen.map((doc) => doc.progress)
    expect([...progress].sort((a, b) => a - b)).toEqual(progress)
    const done = await read(job.id)
    expect(done).toMatchObject({
      status: 'completed',
      progress: 100,
      step: 'done',
      eta_seconds: 0,
      result: { steps: 8, attempt: 1 },
      attempts: 1,
      error: null,
      last_error: null,
    })
    expect(seen.at(-1)).toEqual(done)
    // It ran as jobwire_worker: the role its login starts as.
    expect(worker.output()).toMatch(/started as jobwire_worker/)
  })

  it('retries a failed attempt after the backoff, showing why while it waits', async () => {
    const job = await create({
      steps: 2,
      step_seconds: 0.05,
      fail_attempts: 1,
      fail_message: 'upstream timed out',
      fail_code: 'timeout',
    })
    const seen = await watchUntil(job.id, (doc) => doc.status === 'completed')
    const waiting = seen.find((doc) => doc.status === 'queued' && doc.attempts === 1)
    expect(waiting).toMatchObject({
      error: null,
      last_error: { message: 'upstream timed out', code: 'timeout' },
      progress: 0,
    })
    const done = seen.at(-1)!
    expect(done).toMatchObject({ status: 'completed', attempts: 2, last_error: null })
    expect(done.result).toEqual({ steps: 2, attempt: 2 })
    // The backoff of the first failure: not claimed again before 2^1 seconds had passed.
    const waitedMs = Date.parse(done.completed_at!) - Date.parse(waiting!.updated_at)
    expect(waitedMs).toBeGreaterThanOrEqual(2000)
  })

  it('fails a job for good on a non-retryable error', async () => {
    const job = await create({
      fail_attempts: 1,
      retryable: false,
      fail_message: 'Invalid CSV header',
      fail_code: 'bad_input',
    })
    expect(await finished(job.id)).toMatchObject({
      status: 'failed',
      attempts: 1,
      error: { message: 'Invalid CSV header', code: 'bad_input' },
      last_error: { message: 'Invalid CSV header', code: 'bad_input' },
      eta_seconds: 0,
    })
  })

  it('stops a running job whose cancel was requested through the API', async () => {
    const job = await create({ steps: 1000, step_seconds: 0.05 })
    await watchUntil(job.id, (doc) => doc.status === 'running' && doc.step !== null)
    const cancel = await service.fetch(`/v1/jobs/${job.id}/cancel`, {
      method: 'POST',
      token: tenant.admin,
    })
    expect(cancel.status).toBe(202)
    const done = await finished(job.id)
    expect(done).toMatchObject({ status: 'cancelled', cancel_requested: true, attempts: 1 })
    expect(done.progress).toBeLessThan(100)
    // The worker logs it once its jobwire_cancelled() returned, a moment after the commit.
    await until(() => worker.output().includes(`cancelled ${job.id}`), 'the worker to log it')
  })

  // Last: the worker exits.
  it('gives the running job back on SIGTERM and exits 0', async () => {
    const job = await create({ steps: 1000, step_seconds: 0.05 })
    await watchUntil(job.id, (doc) => doc.status === 'running' && doc.step !== null)
    expect(await worker.stop('SIGTERM')).toBe(0)
    // Released: queued again at once, the interrupted attempt not counted.
    expect(await read(job.id)).toMatchObject({
      status: 'queued',
      attempts: 0,
      progress: 0,
      last_error: { message: 'worker stopped', code: 'worker_stopped' },
    })
    const { rows } = await sql.query('SELECT locked_by FROM job_queue WHERE id = $1', [job.id])
    expect(rows).toEqual([{ locked_by: null }])
    expect(worker.output()).toMatch(/worker .* stopped/)
  })
})
