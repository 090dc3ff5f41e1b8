import pg from 'pg'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import { createJob, newTenant, startTestService, type TestService } from '../helpers/service.js'

let database: TestDatabase
let service: TestService

beforeAll(async () => {
  database = await createTestDatabase()
  service = await startTestService(database.url)
})
afterAll(async () => {
  await service?.close()
  await database?.drop()
})

describe('the job API over a real database', () => {
  it('creates a job that its tenant admin can read back', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin, { type: 'export', payload: { rows: 10 } })
    expect(job).toMatchObject({ type: 'export', status: 'queued', progress: 0, version: 1 })
    const res = await service.fetch(`/v1/jobs/${job.id}`, { token: t.admin })
    expect(res.status).toBe(200)
    expect(res.headers.get('etag')).toBe('"1"')
  })

  it("returns 404, not 403, for another tenant's job, even though the service logs in as a superuser", async () => {
    const client = new pg.Client({ connectionString: database.url })
    await client.connect()
    const { rows } = await client.query<{ rolsuper: boolean }>(
      'SELECT rolsuper FROM pg_roles WHERE rolname = current_user',
    )
    await client.end()
    expect(rows[0]?.rolsuper).toBe(true)

    const a = newTenant()
    const b = newTenant()
    const job = await createJob(service, a.admin)
    const res = await service.fetch(`/v1/jobs/${job.id}`, { token: b.admin })
    expect(res.status).toBe(404)
    expect(res.headers.get('content-type')).toMatch(/application\/problem\+json/)
  })
})
