// The reads behind every job response select the document's columns only: the payload,
// which no response carries and which can be large, never leaves the database for them.
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import { createJob, newTenant, startTestService, type TestService } from '../helpers/service.js'
import {
  findJobByIdempotencyKey,
  listChangedSince,
  listVisibleJobs,
  lockVisibleJob,
} from '../../src/db/jobs.js'
import { readVisibleJob, withTenant, type Principal } from '../../src/db/tenant-transaction.js'

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

it('reads jobs without their payload', async () => {
  const t = newTenant()
  const payload = { blob: 'x'.repeat(10_000) }
  const job = await createJob(
    service,
    t.admin,
    { type: 'big', payload },
    { 'idempotency-key': 'k1' },
  )
  const admin: Principal = { tenantId: t.tenantId, userId: 'admin-1', role: 'admin' }
  const rows = [
    await readVisibleJob(service.db, admin, job.id),
    ...(await withTenant(service.db, admin, async (trx) => [
      await lockVisibleJob(trx, job.id),
      await findJobByIdempotencyKey(trx, { tenantId: t.tenantId, ownerId: 'admin-1' }, 'k1'),
      ...(await listVisibleJobs(trx, { limit: 10 })),
      ...(await listChangedSince(trx, new Date(0), 10)),
    ])),
  ]
  expect(rows).toHaveLength(5)
  for (const row of rows) {
    expect(row).toMatchObject({ id: job.id, tenant_id: t.tenantId, owner_id: 'admin-1' })
    expect(row).not.toHaveProperty('payload')
  }
  // The payload is stored all the same.
  const stored = await service.db
    .selectFrom('job_queue')
    .select('payload')
    .where('id', '=', job.id)
    .executeTakeFirst()
  expect(stored?.payload).toEqual(payload)
})
