// Tenant isolation (docs/contract.md §3), with the service logging in as a superuser, as the
// embedded default does: row-level security must hold because requests run as jobwire_app, not
// because the login lacks privileges.
import { randomUUID } from 'node:crypto'
import pg from 'pg'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import {
  createJob,
  newTenant,
  startTestService,
  tokenFor,
  type TestService,
} from '../helpers/service.js'

let database: TestDatabase
let service: TestService
let superuser: pg.Pool

beforeAll(async () => {
  database = await createTestDatabase()
  service = await startTestService(database.url)
  superuser = new pg.Pool({ connectionString: database.url, max: 3 })
})
afterAll(async () => {
  await service?.close()
  await superuser?.end()
  await database?.drop()
})

interface ListBody {
  data: Array<{ id: string }>
  next_cursor: string | null
}

async function listIds(token: string): Promise<string[]> {
  const ids: string[] = []
  let cursor: string | null = null
  do {
    const query: string = cursor ? `?limit=100&cursor=${cursor}` : '?limit=100'
    const res = await service.fetch(`/v1/jobs${query}`, { token })
    expect(res.status).toBe(200)
    const body = (await res.json()) as ListBody
    ids.push(...body.data.map((d) => d.id))
    cursor = body.next_cursor
  } while (cursor)
  return ids
}

async function expectNotFoundProblem(res: Response, jobId: string): Promise<void> {
  expect(res.status).toBe(404)
  expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/)
  const body = (await res.json()) as Record<string, unknown>
  expect(body).toMatchObject({ status: 404, type: expect.stringMatching(/job-not-found$/) })
  // The same answer as for a job that does not exist: no existence oracle.
  const missing = await service.fetch(`/v1/jobs/${randomUUID()}`, {
    token: tokenFor({ role: 'admin' }),
  })
  const missingBody = (await missing.json()) as Record<string, unknown>
  expect(Object.keys(body).sort()).toEqual(Object.keys(missingBody).sort())
  expect(body.title).toBe(missingBody.title)
  expect(String(body.detail)).toContain(jobId)
}

/** Runs `fn` on one connection inside BEGIN … ROLLBACK as jobwire_app. */
async function asAppRole<T>(
  settings: Record<string, string> | undefined,
  fn: (client: pg.PoolClient) => Promise<T>,
): Promise<T> {
  const client = await superuser.connect()
  try {
    await client.query('BEGIN')
    await client.query('SET LOCAL ROLE jobwire_app')
    for (const [name, value] of Object.entries(settings ?? {})) {
      await client.query('SELECT set_config($1, $2, true)', [name, value])
    }
    return await fn(client)
  } finally {
    await client.query('ROLLBACK')
    client.release()
  }
}

async function count(client: pg.PoolClient | pg.Pool, where = 'true', params: unknown[] = []) {
  const { rows } = await client.query<{ n: string }>(
    `SELECT count(*) AS n FROM job_queue WHERE ${where}`,
    params,
  )
  return Number(rows[0]!.n)
}

describe('across tenants, with a superuser login', () => {
  it('logs the service in as a superuser, so only RLS can keep tenants apart', async () => {
    const { rows } = await superuser.query<{ rolsuper: boolean }>(
      'SELECT rolsuper FROM pg_roles WHERE rolname = current_user',
    )
    expect(rows[0]?.rolsuper).toBe(true)
    const role = await superuser.query<{ rolsuper: boolean; rolbypassrls: boolean }>(
      "SELECT rolsuper, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = 'jobwire_app'",
    )
    expect(role.rows[0]).toEqual({ rolsuper: false, rolbypassrls: false, rolcanlogin: false })
  })

  it("answers 404 problem+json to tenant B's admin reading tenant A's job", async () => {
    const a = newTenant()
    const b = newTenant()
    const job = await createJob(service, a.admin)
    await expectNotFoundProblem(
      await service.fetch(`/v1/jobs/${job.id}`, { token: b.admin }),
      job.id,
    )
    await expectNotFoundProblem(
      await service.fetch(`/v1/jobs/${job.id}`, { token: b.alice }),
      job.id,
    )
  })

  it("answers 404 to tenant B's admin cancelling tenant A's job, and leaves it queued", async () => {
    const a = newTenant()
    const b = newTenant()
    const job = await createJob(service, a.admin)
    const res = await service.fetch(`/v1/jobs/${job.id}/cancel`, { method: 'POST', token: b.admin })
    await expectNotFoundProblem(res, job.id)
    const still = await service.fetch(`/v1/jobs/${job.id}`, { token: a.admin })
    expect(await still.json()).toMatchObject({ status: 'queued', version: 1 })
  })

  it("never lists tenant A's jobs to tenant B, even filtered by their type", async () => {
    const a = newTenant()
    const b = newTenant()
    const type = `rls-${randomUUID().slice(0, 8)}`
    const aJob = await createJob(service, a.admin, { type })
    const bJob = await createJob(service, b.admin, { type })
    expect(await listIds(a.admin)).toEqual([aJob.id])
    expect(await listIds(b.admin)).toEqual([bJob.id])
    const filtered = await service.fetch(`/v1/jobs?type=${type}`, { token: b.admin })
    expect(((await filtered.json()) as ListBody).data.map((d) => d.id)).toEqual([bJob.id])
  })

  it('treats the same user id in two tenants as two different users', async () => {
    const tenantA = randomUUID()
    const tenantB = randomUUID()
    const inA = tokenFor({ tenantId: tenantA, sub: 'shared-sub', role: 'member' })
    const inB = tokenFor({ tenantId: tenantB, sub: 'shared-sub', role: 'member' })
    const job = await createJob(service, inA)
    expect((await service.fetch(`/v1/jobs/${job.id}`, { token: inB })).status).toBe(404)
    expect(await listIds(inB)).toEqual([])
  })
})

describe('within a tenant', () => {
  it("answers 404 to a member reading or cancelling another member's job", async () => {
    const t = newTenant()
    const alices = await createJob(service, t.alice)
    await expectNotFoundProblem(
      await service.fetch(`/v1/jobs/${alices.id}`, { token: t.bob }),
      alices.id,
    )
    const cancel = await service.fetch(`/v1/jobs/${alices.id}/cancel`, {
      method: 'POST',
      token: t.bob,
    })
    await expectNotFoundProblem(cancel, alices.id)
    expect((await service.fetch(`/v1/jobs/${alices.id}`, { token: t.alice })).status).toBe(200)
  })

  it('lists to a member only the jobs it owns', async () => {
    const t = newTenant()
    const alice1 = await createJob(service, t.alice)
    const bob1 = await createJob(service, t.bob)
    const alice2 = await createJob(service, t.alice)
    await createJob(service, t.admin)
    expect(await listIds(t.alice)).toEqual([alice2.id, alice1.id])
    expect(await listIds(t.bob)).toEqual([bob1.id])
  })

  it("shows an admin every job of its tenant and lets it cancel a member's job", async () => {
    const t = newTenant()
    const alices = await createJob(service, t.alice)
    const bobs = await createJob(service, t.bob)
    const admins = await createJob(service, t.admin)
    expect((await listIds(t.admin)).sort()).toEqual([alices.id, bobs.id, admins.id].sort())
    const read = await service.fetch(`/v1/jobs/${bobs.id}`, { token: t.admin })
    expect(read.status).toBe(200)
    const cancel = await service.fetch(`/v1/jobs/${alices.id}/cancel`, {
      method: 'POST',
      token: t.admin,
    })
    expect(cancel.status).toBe(200)
    expect(await cancel.json()).toMatchObject({ id: alices.id, status: 'cancelled' })
  })
})

describe('the database role jobwire_app', () => {
  it('sees nothing without tenant settings, while the superuser sees rows', async () => {
    const t = newTenant()
    await createJob(service, t.admin)
    expect(await count(superuser)).toBeGreaterThan(0)
    expect(await asAppRole(undefined, (c) => count(c))).toBe(0)
  })

  it("sees exactly tenant A's rows with tenant A's settings", async () => {
    const a = newTenant()
    const b = newTenant()
    await createJob(service, a.alice)
    await createJob(service, a.bob)
    await createJob(service, b.admin)
    const asAdmin = await asAppRole(
      { 'jobwire.tenant_id': a.tenantId, 'jobwire.user_id': 'admin-1', 'jobwire.role': 'admin' },
      async (c) => {
        const { rows } = await c.query<{ tenant_id: string }>('SELECT tenant_id FROM job_queue')
        return rows.map((r) => r.tenant_id)
      },
    )
    expect(asAdmin).toEqual([a.tenantId, a.tenantId])
    const asAlice = await asAppRole(
      { 'jobwire.tenant_id': a.tenantId, 'jobwire.user_id': 'alice', 'jobwire.role': 'member' },
      (c) => count(c),
    )
    expect(asAlice).toBe(1)
  })

  it("cannot write a row into another tenant or change another tenant's row", async () => {
    const a = newTenant()
    const b = newTenant()
    const bJob = await createJob(service, b.admin)
    const settings = {
      'jobwire.tenant_id': a.tenantId,
      'jobwire.user_id': 'admin-1',
      'jobwire.role': 'admin',
    }
    const insertError = await asAppRole(settings, (c) =>
      c
        .query("INSERT INTO job_queue (tenant_id, owner_id, type) VALUES ($1, 'x', 'evil')", [
          b.tenantId,
        ])
        .then(
          () => undefined,
          (error: pg.DatabaseError) => error,
        ),
    )
    expect(insertError?.code).toBe('42501')
    const updated = await asAppRole(settings, (c) =>
      c.query("UPDATE job_queue SET status = 'cancelled' WHERE id = $1", [bJob.id]),
    )
    expect(updated.rowCount).toBe(0)
  })

  it("keeps a pooled connection's next transaction blind: '' is not a tenant, and no error", async () => {
    const a = newTenant()
    await createJob(service, a.admin)
    const client = await superuser.connect()
    try {
      await client.query('BEGIN')
      await client.query('SET LOCAL ROLE jobwire_app')
      await client.query(
        "SELECT set_config('jobwire.tenant_id', $1, true), set_config('jobwire.user_id', 'admin-1', true), set_config('jobwire.role', 'admin', true)",
        [a.tenantId],
      )
      expect(await count(client)).toBe(1)
      await client.query('COMMIT')

      // Same connection: the custom settings now exist with the value '' (not NULL).
      const { rows } = await client.query<{ v: string | null }>(
        "SELECT current_setting('jobwire.tenant_id', true) AS v",
      )
      expect(rows[0]?.v).toBe('')
      await client.query('BEGIN')
      await client.query('SET LOCAL ROLE jobwire_app')
      expect(await count(client)).toBe(0)
      await client.query('COMMIT')
    } finally {
      client.release()
    }
  })
})

describe('jobwire_read_job()', () => {
  it("returns nothing for another tenant's job even when a superuser calls it", async () => {
    const a = newTenant()
    const b = newTenant()
    const job = await createJob(service, a.alice)
    const read = (tenant: string, user: string, role: string) =>
      superuser
        .query<{ id: string }>('SELECT id FROM jobwire_read_job($1, $2, $3, $4)', [
          tenant,
          user,
          role,
          job.id,
        ])
        .then((r) => r.rows.map((row) => row.id))

    expect(await read(a.tenantId, 'alice', 'member')).toEqual([job.id])
    expect(await read(a.tenantId, 'admin-1', 'admin')).toEqual([job.id])
    expect(await read(b.tenantId, 'admin-1', 'admin')).toEqual([])
    expect(await read(a.tenantId, 'bob', 'member')).toEqual([])
    expect(await read(a.tenantId, 'alice', 'root')).toEqual([job.id])
    expect(await read(a.tenantId, 'bob', 'root')).toEqual([])
  })

  it('leaves the connection as it found it once the statement is over', async () => {
    const client = await superuser.connect()
    try {
      const job = await createJob(service, newTenant().admin)
      const { rows } = await client.query<{ n: string }>(
        "SELECT count(*) AS n FROM jobwire_read_job(gen_random_uuid(), 'x', 'admin', $1)",
        [job.id],
      )
      expect(rows[0]?.n).toBe('0')
      const after = await client.query<{ who: string; tenant: string | null }>(
        "SELECT current_user AS who, current_setting('jobwire.tenant_id', true) AS tenant",
      )
      expect(after.rows[0]?.who).toBe('postgres')
      expect(after.rows[0]?.tenant).toBe('')
      expect(await count(client, 'id = $1', [job.id])).toBe(1)
    } finally {
      client.release()
    }
  })
})
