import pg from 'pg'
import fastJsonPatch from 'fast-json-patch'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import { createJob, newTenant, startTestService, type TestService } from '../helpers/service.js'
import { openSse } from '../helpers/sse.js'

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

it('delivers a direct SQL UPDATE to an SSE client as a patch', async () => {
  const t = newTenant()
  const job = await createJob(service, t.admin)
  const stream = await openSse(`${service.url}/v1/jobs/${job.id}/events`, {
    headers: { authorization: `Bearer ${t.admin}` },
  })
  expect(stream.status).toBe(200)
  const snapshot = await stream.next('snapshot')
  let doc = snapshot.json<Record<string, unknown>>()
  await sql.query(
    `UPDATE job_queue SET status = 'running', progress = 40, step = 'halfway' WHERE id = $1`,
    [job.id],
  )
  const patch = await stream.next('patch')
  doc = fastJsonPatch.applyPatch(doc, patch.json(), true, false).newDocument
  expect(doc).toMatchObject({ status: 'running', progress: 40, step: 'halfway', version: 2 })
  await sql.query(
    `UPDATE job_queue SET status = 'completed', progress = 100, result = '{"ok":true}' WHERE id = $1`,
    [job.id],
  )
  const last = await stream.next('patch')
  doc = fastJsonPatch.applyPatch(doc, last.json(), true, false).newDocument
  await stream.next('end')
  await stream.closed
  const res = await service.fetch(`/v1/jobs/${job.id}`, { token: t.admin })
  expect(doc).toEqual(await res.json())
})
