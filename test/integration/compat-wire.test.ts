// What a client of each compatibility section sees — status, every header, the body (or a
// stream's first bytes) — for success and the errors, recorded in
// __snapshots__/compat-wire.test.ts.snap (docs/compat.md). Values that differ per run (ids,
// dates, request ids) are replaced by placeholders first.
import pg from 'pg'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import { createJob, newTenant, startTestService, type TestService } from '../helpers/service.js'
import { request, upgrade } from '../helpers/wire.js'

let database: TestDatabase
let service: TestService
let sql: pg.Client

beforeAll(async () => {
  database = await createTestDatabase()
  service = await startTestService(database.url, {
    COMPAT_ROUTES: 'all',
    COMPAT_ANONYMOUS_READ: 'true',
  })
  sql = new pg.Client({ connectionString: database.url })
  await sql.connect()
})
afterAll(async () => {
  await sql?.end()
  await service?.close()
  await database?.drop()
})

const auth = (token: string) => ({ authorization: `Bearer ${token}` })

describe('the compatibility routes answer exactly as recorded', () => {
  const t = newTenant()
  const other = newTenant()
  let job: { id: string; watch_token?: unknown }
  let done: { id: string }
  let failed: { id: string }

  beforeAll(async () => {
    job = await createJob(service, t.alice, { type: 'wire.compat' })
    done = await createJob(service, t.alice, { type: 'wire.done' })
    failed = await createJob(service, t.alice, { type: 'wire.failed' })
    await sql.query(
      `UPDATE job_queue SET status = 'running', progress = 12.5, step = 'parse', eta_seconds = 30 WHERE id = $1`,
      [job.id],
    )
    await sql.query(
      `UPDATE job_queue SET status = 'completed', progress = 100, result = '{"ok":true}' WHERE id = $1`,
      [done.id],
    )
    await sql.query(
      `UPDATE job_queue SET status = 'failed', error = '{"message":"bad input","code":"E_IN"}' WHERE id = $1`,
      [failed.id],
    )
  })

  it('jobs', async () => {
    const link = job.watch_token as string
    expect({
      ok: await request(service, `/jobs/${job.id}?token=${link}`),
      anonymous: await request(service, `/jobs/${job.id}`),
      stream: await request(
        service,
        `/jobs/${job.id}?stream=true&token=${link}`,
        {},
        {
          until: 'event: snapshot',
        },
      ),
      malformed: await request(service, '/jobs/nope'),
      otherTenant: await request(service, `/jobs/${job.id}`, auth(other.admin)),
      badToken: await request(service, `/jobs/${job.id}?token=garbage`),
      wsMalformed: await upgrade(service, '/jobs/nope', auth(other.admin)),
    }).toMatchSnapshot()
  })

  it('api-jobs', async () => {
    expect({
      processing: await request(service, `/api/jobs/${job.id}`, auth(t.alice)),
      completed: await request(service, `/api/jobs/${done.id}`, auth(t.alice)),
      failed: await request(service, `/api/jobs/${failed.id}`, auth(t.alice)),
      noToken: await request(service, `/api/jobs/${job.id}`),
      malformed: await request(service, '/api/jobs/nope', auth(t.alice)),
      otherTenant: await request(service, `/api/jobs/${job.id}`, auth(other.admin)),
      events: await request(
        service,
        `/api/jobs/${job.id}/events?token=${t.admin}`,
        {},
        {
          until: '"step":"parse"}',
        },
      ),
      eventsDone: await request(service, `/api/jobs/${done.id}/events`, auth(t.admin)),
      eventsMember: await request(service, `/api/jobs/${job.id}/events`, auth(t.alice)),
    }).toMatchSnapshot()
  })

  it('api-queue', async () => {
    expect({
      poll: await request(service, `/api/queue/poll/${done.id}`, auth(t.alice)),
      waitDone: await request(service, `/api/queue/poll/${done.id}/wait?timeout=5`, auth(t.alice)),
      waitNow: await request(service, `/api/queue/poll/${job.id}/wait?timeout=0`, auth(t.alice)),
      waitTooLong: await request(
        service,
        `/api/queue/poll/${job.id}/wait?timeout=999`,
        auth(t.alice),
      ),
      otherTenant: await request(service, `/api/queue/poll/${job.id}`, auth(other.admin)),
    }).toMatchSnapshot()
  })

  it('api-v1', async () => {
    expect({
      status: await request(service, `/api/v1/jobs/${failed.id}/status?token=${t.alice}`),
      stream: await request(service, `/api/v1/jobs/${failed.id}/stream`, auth(t.alice)),
      malformed: await request(service, '/api/v1/jobs/nope/stream', auth(t.alice)),
      otherTenant: await request(service, `/api/v1/jobs/${job.id}/status`, auth(other.admin)),
    }).toMatchSnapshot()
  })
})
