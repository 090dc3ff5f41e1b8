// The REST API of docs/contract.md §5–§6 as a client meets it: create (with idempotency), list
// (filters, keyset pagination), read (ETag), cancel, and problem+json for every 4xx. A small fuzz
// checks that no malformed input becomes a 500.
import { randomUUID } from 'node:crypto'
import { gzipSync } from 'node:zlib'
import pg from 'pg'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import { createJob, newTenant, startTestService, type TestService } from '../helpers/service.js'

let database: TestDatabase
let service: TestService
let small: TestService
let pool: pg.Pool

beforeAll(async () => {
  database = await createTestDatabase()
  service = await startTestService(database.url)
  small = await startTestService(database.url, { BODY_LIMIT_BYTES: '2048' })
  pool = new pg.Pool({ connectionString: database.url, max: 3 })
})
afterAll(async () => {
  await small?.close()
  await service?.close()
  await pool?.end()
  await database?.drop()
})

type Json = Record<string, unknown>

interface ListBody {
  data: Json[]
  next_cursor: string | null
}

const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/

function post(path: string, token: string | undefined, body: unknown, headers: Json = {}) {
  return service.fetch(path, {
    method: 'POST',
    token,
    headers: { 'content-type': 'application/json', ...(headers as Record<string, string>) },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  })
}

async function problem(res: Response, status: number): Promise<Json> {
  expect(res.status).toBe(status)
  expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/)
  const body = (await res.json()) as Json
  expect(body).toMatchObject({
    status,
    type: expect.stringMatching(/^https?:\/\/\S+\/problems\/[a-z-]+$/),
    title: expect.any(String),
    detail: expect.any(String),
  })
  return body
}

/** The SQL a worker would run; the API must show what it wrote. */
async function workerSql(text: string, params: unknown[]): Promise<void> {
  await pool.query(text, params)
}

describe('POST /v1/jobs', () => {
  it('creates a queued job: 201, Location, ETag, watch_token and the contract §6 document', async () => {
    const t = newTenant()
    const res = await post('/v1/jobs', t.alice, { type: 'export.csv', payload: { rows: 3 } })
    expect(res.status).toBe(201)
    const doc = (await res.json()) as Json
    expect(res.headers.get('location')).toBe(`/v1/jobs/${String(doc.id)}`)
    expect(res.headers.get('etag')).toBe('"1"')
    expect(doc).toEqual({
      id: expect.stringMatching(/^[0-9a-f-]{36}$/),
      type: 'export.csv',
      status: 'queued',
      progress: 0,
      step: null,
      eta_seconds: null,
      result: null,
      error: null,
      last_error: null,
      attempts: 0,
      max_attempts: expect.any(Number),
      cancel_requested: false,
      version: 1,
      created_at: expect.stringMatching(ISO_UTC),
      updated_at: expect.stringMatching(ISO_UTC),
      started_at: null,
      completed_at: null,
      watch_token: expect.any(String),
    })
    expect(doc).not.toHaveProperty('payload')
    const read = await service.fetch(res.headers.get('location')!, { token: t.alice })
    const { watch_token: _ignored, ...withoutToken } = doc
    expect(await read.json()).toEqual(withoutToken)
  })

  it('stores the payload and options it was given', async () => {
    const t = newTenant()
    const payload = { nested: { list: [1, 'two', null, true] }, text: 'naïve ☃' }
    const job = await createJob(service, t.admin, {
      type: 'import',
      payload,
      max_attempts: 7,
      priority: 5,
      run_at: '2030-01-01T00:00:00+02:00',
    })
    expect(job.max_attempts).toBe(7)
    const { rows } = await pool.query<{ payload: unknown; priority: number; run_at: Date }>(
      'SELECT payload, priority, run_at, owner_id, tenant_id FROM job_queue WHERE id = $1',
      [job.id],
    )
    expect(rows[0]).toMatchObject({
      payload,
      priority: 5,
      run_at: new Date('2029-12-31T22:00:00Z'),
      owner_id: 'admin-1',
      tenant_id: t.tenantId,
    })
  })

  it('turns PostgreSQL bigint and numeric columns into JSON numbers', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    await workerSql(
      "UPDATE job_queue SET status = 'running', progress = 33.5, eta_seconds = 12, attempts = 1, step = 'reading' WHERE id = $1",
      [job.id],
    )
    const doc = (await (
      await service.fetch(`/v1/jobs/${job.id}`, { token: t.admin })
    ).json()) as Json
    expect(doc).toMatchObject({
      status: 'running',
      progress: 33.5,
      eta_seconds: 12,
      attempts: 1,
      version: 2,
      step: 'reading',
      started_at: expect.stringMatching(ISO_UTC),
      completed_at: null,
    })
  })

  it('shows result only when completed and error only when failed', async () => {
    const t = newTenant()
    const done = await createJob(service, t.admin)
    const failed = await createJob(service, t.admin)
    await workerSql(
      `UPDATE job_queue SET status = 'completed', result = '{"url":"s3://x"}', error = '{"message":"stale"}' WHERE id = $1`,
      [done.id],
    )
    await workerSql(
      `UPDATE job_queue SET status = 'failed', result = '{"partial":true}', error = '{"message":"boom","code":"E_IO"}' WHERE id = $1`,
      [failed.id],
    )
    const read = async (id: string) =>
      (await (await service.fetch(`/v1/jobs/${id}`, { token: t.admin })).json()) as Json
    expect(await read(done.id)).toMatchObject({
      status: 'completed',
      result: { url: 's3://x' },
      error: null,
      progress: expect.any(Number),
      completed_at: expect.stringMatching(ISO_UTC),
    })
    expect(await read(failed.id)).toMatchObject({
      status: 'failed',
      result: null,
      error: { message: 'boom', code: 'E_IO' },
    })
  })
})

describe('Idempotency-Key', () => {
  it('returns the same job on a retry, with 200 and Idempotent-Replayed', async () => {
    const t = newTenant()
    const key = `key-${randomUUID()}`
    const first = await post(
      '/v1/jobs',
      t.admin,
      { type: 'a', payload: { x: 1, y: 2 } },
      {
        'idempotency-key': key,
      },
    )
    expect(first.status).toBe(201)
    const created = (await first.json()) as Json
    // Same body, keys in another order: the same request.
    const retry = await post(
      '/v1/jobs',
      t.admin,
      { payload: { y: 2, x: 1 }, type: 'a' },
      {
        'idempotency-key': key,
      },
    )
    expect(retry.status).toBe(200)
    expect(retry.headers.get('idempotent-replayed')).toBe('true')
    expect(retry.headers.get('location')).toBe(`/v1/jobs/${String(created.id)}`)
    expect(await retry.json()).toMatchObject({ id: created.id, version: 1 })
    expect(await countJobs(t.tenantId)).toBe(1)
  })

  it('gives a replay a watch token that opens the job', async () => {
    const t = newTenant()
    const key = `key-${randomUUID()}`
    const first = await post('/v1/jobs', t.alice, { type: 'a' }, { 'idempotency-key': key })
    expect(first.status).toBe(201)
    const created = (await first.json()) as Json
    const retry = await post('/v1/jobs', t.alice, { type: 'a' }, { 'idempotency-key': key })
    expect(retry.status).toBe(200)
    expect(retry.headers.get('idempotent-replayed')).toBe('true')
    const replayed = (await retry.json()) as Json
    expect(replayed.id).toBe(created.id)
    const watched = await service.fetch(`/v1/jobs/${String(created.id)}`, {
      token: String(replayed.watch_token),
    })
    expect(watched.status).toBe(200)
  })

  it('keeps keys per owner: two members with the same key each get their own job', async () => {
    const t = newTenant()
    const key = `key-${randomUUID()}`
    const alice = await post('/v1/jobs', t.alice, { type: 'a' }, { 'idempotency-key': key })
    // Another body, even: Bob's key is his own, so nothing tells him Alice used it.
    const bob = await post('/v1/jobs', t.bob, { type: 'b' }, { 'idempotency-key': key })
    expect(alice.status).toBe(201)
    expect(bob.status).toBe(201)
    expect(bob.headers.get('idempotent-replayed')).toBeNull()
    const [a, b] = [(await alice.json()) as Json, (await bob.json()) as Json]
    expect(a.id).not.toBe(b.id)
    expect(b).toMatchObject({ type: 'b', version: 1 })
    // Each replays into their own job.
    for (const [token, body, id] of [
      [t.alice, { type: 'a' }, a.id],
      [t.bob, { type: 'b' }, b.id],
    ] as const) {
      const retry = await post('/v1/jobs', token, body, { 'idempotency-key': key })
      expect(retry.status).toBe(200)
      expect(retry.headers.get('idempotent-replayed')).toBe('true')
      expect(((await retry.json()) as Json).id).toBe(id)
    }
    expect(await countJobs(t.tenantId)).toBe(2)
  })

  it("gives an admin who sends a member's key a new job, not the member's", async () => {
    const t = newTenant()
    const key = `key-${randomUUID()}`
    const member = await post('/v1/jobs', t.alice, { type: 'a' }, { 'idempotency-key': key })
    const admin = await post('/v1/jobs', t.admin, { type: 'a' }, { 'idempotency-key': key })
    expect(member.status).toBe(201)
    expect(admin.status).toBe(201)
    const [m, a] = [(await member.json()) as Json, (await admin.json()) as Json]
    expect(a.id).not.toBe(m.id)
    const { rows } = await pool.query<{ owner_id: string }>(
      'SELECT owner_id FROM job_queue WHERE id = $1',
      [a.id],
    )
    expect(rows).toEqual([{ owner_id: 'admin-1' }])
  })

  it('gives jobs inserted by SQL without an owner a key space of their own', async () => {
    const t = newTenant()
    const key = `sql-${randomUUID()}`
    const insert = () =>
      pool.query(
        `INSERT INTO job_queue (tenant_id, owner_id, type, idempotency_key) VALUES ($1, NULL, 'sql', $2)`,
        [t.tenantId, key],
      )
    await insert()
    // Ownerless jobs share one key space per tenant: the same key twice is a conflict.
    await expect(insert()).rejects.toMatchObject({ code: '23505' })
    // An API user's key never meets an ownerless job's.
    const res = await post('/v1/jobs', t.admin, { type: 'a' }, { 'idempotency-key': key })
    expect(res.status).toBe(201)
    expect(await countJobs(t.tenantId)).toBe(2)
  })

  it('answers 422 problem to the same key with a different body', async () => {
    const t = newTenant()
    const key = `key-${randomUUID()}`
    await post('/v1/jobs', t.admin, { type: 'a' }, { 'idempotency-key': key })
    const reuse = await post('/v1/jobs', t.admin, { type: 'b' }, { 'idempotency-key': key })
    await problem(reuse, 422)
    expect(await countJobs(t.tenantId)).toBe(1)
  })

  it('keeps keys per tenant: the same key in two tenants makes two jobs', async () => {
    const a = newTenant()
    const b = newTenant()
    const key = `shared-${randomUUID()}`
    const inA = await post('/v1/jobs', a.admin, { type: 'a' }, { 'idempotency-key': key })
    const inB = await post('/v1/jobs', b.admin, { type: 'a' }, { 'idempotency-key': key })
    expect(inA.status).toBe(201)
    expect(inB.status).toBe(201)
    const [ja, jb] = [(await inA.json()) as Json, (await inB.json()) as Json]
    expect(ja.id).not.toBe(jb.id)
  })

  it('makes one job from 10 parallel POSTs with the same key', async () => {
    const t = newTenant()
    const key = `race-${randomUUID()}`
    const responses = await Promise.all(
      Array.from({ length: 10 }, () =>
        post('/v1/jobs', t.admin, { type: 'race', payload: { n: 1 } }, { 'idempotency-key': key }),
      ),
    )
    const statuses = responses.map((r) => r.status).sort()
    expect(statuses).toEqual([200, 200, 200, 200, 200, 200, 200, 200, 200, 201])
    const ids = new Set(
      await Promise.all(responses.map(async (r) => ((await r.json()) as Json).id)),
    )
    expect(ids.size).toBe(1)
    expect(await countJobs(t.tenantId)).toBe(1)
  })

  it('refuses a malformed key with 400', async () => {
    const t = newTenant()
    const tooLong = await post(
      '/v1/jobs',
      t.admin,
      { type: 'a' },
      { 'idempotency-key': 'k'.repeat(257) },
    )
    const body = await problem(tooLong, 400)
    expect(body.invalid_params).toEqual([expect.objectContaining({ name: 'header' })])
    await problem(await post('/v1/jobs', t.admin, { type: 'a' }, { 'idempotency-key': 'a b' }), 400)
  })
})

describe('GET /v1/jobs', () => {
  it('filters by status and by type', async () => {
    const t = newTenant()
    const a1 = await createJob(service, t.admin, { type: 'alpha' })
    const a2 = await createJob(service, t.admin, { type: 'alpha' })
    const b1 = await createJob(service, t.admin, { type: 'beta' })
    await post(`/v1/jobs/${a1.id}/cancel`, t.admin, {})
    const ids = async (query: string) => {
      const res = await service.fetch(`/v1/jobs${query}`, { token: t.admin })
      expect(res.status).toBe(200)
      return ((await res.json()) as ListBody).data.map((d) => d.id)
    }
    expect(await ids('?type=alpha')).toEqual([a2.id, a1.id])
    expect(await ids('?status=cancelled')).toEqual([a1.id])
    expect(await ids('?status=queued')).toEqual([b1.id, a2.id])
    expect(await ids('?status=queued&type=alpha')).toEqual([a2.id])
    expect(await ids('?status=running')).toEqual([])
    expect(await ids('')).toEqual([b1.id, a2.id, a1.id])
  })

  it('answers a list as {data, next_cursor} with next_cursor null on the last page', async () => {
    const t = newTenant()
    await createJob(service, t.admin)
    await createJob(service, t.admin)
    const first = (await (
      await service.fetch('/v1/jobs?limit=1', { token: t.admin })
    ).json()) as ListBody
    expect(first.data).toHaveLength(1)
    expect(typeof first.next_cursor).toBe('string')
    const second = (await (
      await service.fetch(`/v1/jobs?limit=1&cursor=${first.next_cursor}`, { token: t.admin })
    ).json()) as ListBody
    expect(second.data).toHaveLength(1)
    expect(second.data[0]!.id).not.toBe(first.data[0]!.id)
    // Exactly two jobs: a page that ends the list says so, even when it is full.
    const both = (await (
      await service.fetch('/v1/jobs?limit=2', { token: t.admin })
    ).json()) as ListBody
    expect(both.data).toHaveLength(2)
    expect(both.next_cursor).toBeNull()
  })

  it.each([['0'], ['101'], ['abc'], ['-1'], ['1.5'], [''], ['1e2']])(
    'refuses limit=%s with 400 naming query.limit',
    async (limit) => {
      const t = newTenant()
      const res = await service.fetch(`/v1/jobs?limit=${limit}`, { token: t.admin })
      const body = await problem(res, 400)
      expect(body.invalid_params).toEqual([expect.objectContaining({ name: 'query.limit' })])
    },
  )

  it('accepts the limit bounds 1 and 100', async () => {
    const t = newTenant()
    expect((await service.fetch('/v1/jobs?limit=1', { token: t.admin })).status).toBe(200)
    expect((await service.fetch('/v1/jobs?limit=100', { token: t.admin })).status).toBe(200)
  })

  it.each([
    ['garbage', 'garbage'],
    ['base64 of non-JSON', Buffer.from('hello').toString('base64url')],
    ['a JSON cursor of the wrong shape', Buffer.from('{"a":1}').toString('base64url')],
    ['an impossible date', cursorOf('2024-13-45T99:99:99.000000Z')],
    ['the 30th of February', cursorOf('2024-02-30T00:00:00.000000Z')],
    ['year zero', cursorOf('0000-01-01T00:00:00.000000Z')],
    ['an out-of-range offset', cursorOf('2024-01-01 00:00:00+99')],
    ['a local time in another DateStyle', cursorOf('01/02/2024 00:00:00')],
    ['a cursor with a malformed id', cursorOf('2024-01-01T00:00:00.000000Z', 'x')],
  ])('refuses a cursor that is %s with 400 naming query.cursor', async (_name, cursor) => {
    const t = newTenant()
    const res = await service.fetch(`/v1/jobs?cursor=${encodeURIComponent(cursor)}`, {
      token: t.admin,
    })
    const body = await problem(res, 400)
    expect(body.invalid_params).toEqual([expect.objectContaining({ name: 'query.cursor' })])
  })

  it('refuses an unknown or repeated query parameter with 400', async () => {
    const t = newTenant()
    const unknown = await problem(
      await service.fetch('/v1/jobs?stauts=queued', { token: t.admin }),
      400,
    )
    expect(String(unknown.detail)).toContain('stauts')
    await problem(
      await service.fetch('/v1/jobs?status=queued&status=running', { token: t.admin }),
      400,
    )
    await problem(await service.fetch('/v1/jobs?status=done', { token: t.admin }), 400)
  })

  it('pages through 250 jobs with concurrent inserts: none twice, none skipped', async () => {
    const t = newTenant()
    // 150 rows from one statement share created_at (ties broken by id), 100 more via the API.
    const { rows } = await pool.query<{ id: string }>(
      `INSERT INTO job_queue (tenant_id, owner_id, type)
         SELECT $1, 'admin-1', 'bulk' FROM generate_series(1, 150) RETURNING id`,
      [t.tenantId],
    )
    const atStart = new Set(rows.map((r) => r.id))
    for (let batch = 0; batch < 10; batch++) {
      const jobs = await Promise.all(
        Array.from({ length: 10 }, () => createJob(service, t.admin, { type: 'paged' })),
      )
      for (const job of jobs) atStart.add(job.id)
    }
    expect(atStart.size).toBe(250)

    const seen: string[] = []
    let inserted = 0
    let cursor: string | null = null
    do {
      const query: string = `/v1/jobs?limit=7${cursor ? `&cursor=${cursor}` : ''}`
      const [res] = await Promise.all([
        service.fetch(query, { token: t.admin }),
        createJob(service, t.admin, { type: 'paged' }),
        createJob(service, t.admin, { type: 'paged' }),
      ])
      inserted += 2
      expect(res.status).toBe(200)
      const page = (await res.json()) as ListBody
      expect(page.data.length).toBeLessThanOrEqual(7)
      seen.push(...page.data.map((d) => String(d.id)))
      cursor = page.next_cursor
    } while (cursor)

    expect(new Set(seen).size).toBe(seen.length)
    const missing = [...atStart].filter((id) => !seen.includes(id))
    expect(missing).toEqual([])
    expect(inserted).toBeGreaterThan(60)
  }, 120_000)
})

describe('GET /v1/jobs/:id', () => {
  it('sends ETag "<version>", answers If-None-Match with 304, then 200 after a change', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    const first = await service.fetch(`/v1/jobs/${job.id}`, { token: t.admin })
    expect(first.headers.get('etag')).toBe('"1"')

    for (const tag of ['"1"', 'W/"1"', '"0", "1"', '*']) {
      const cached = await service.fetch(`/v1/jobs/${job.id}`, {
        token: t.admin,
        headers: { 'if-none-match': tag },
      })
      expect(cached.status).toBe(304)
      expect(cached.headers.get('etag')).toBe('"1"')
      expect(cached.headers.get('cache-control')).toBe(first.headers.get('cache-control'))
      expect(await cached.text()).toBe('')
    }
    const stale = await service.fetch(`/v1/jobs/${job.id}`, {
      token: t.admin,
      headers: { 'if-none-match': '"7"' },
    })
    expect(stale.status).toBe(200)

    await workerSql('UPDATE job_queue SET progress = 50 WHERE id = $1', [job.id])
    const changed = await service.fetch(`/v1/jobs/${job.id}`, {
      token: t.admin,
      headers: { 'if-none-match': '"1"' },
    })
    expect(changed.status).toBe(200)
    expect(changed.headers.get('etag')).toBe('"2"')
    expect(await changed.json()).toMatchObject({ progress: 50, version: 2 })
  })

  it('accepts an upper-case UUID for the same job', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    const res = await service.fetch(`/v1/jobs/${job.id.toUpperCase()}`, { token: t.admin })
    expect(res.status).toBe(200)
    expect(await res.json()).toMatchObject({ id: job.id })
  })
})

describe('POST /v1/jobs/:id/cancel', () => {
  it('cancels a queued job at once (200)', async () => {
    const t = newTenant()
    const job = await createJob(service, t.alice)
    const res = await post(`/v1/jobs/${job.id}/cancel`, t.alice, {})
    expect(res.status).toBe(200)
    expect(res.headers.get('etag')).toBe('"2"')
    expect(await res.json()).toMatchObject({
      id: job.id,
      status: 'cancelled',
      version: 2,
      completed_at: expect.stringMatching(ISO_UTC),
    })
  })

  it('asks a running job to stop (202, cancel_requested) and says so again on a repeat', async () => {
    const t = newTenant()
    const job = await createJob(service, t.alice)
    await workerSql("UPDATE job_queue SET status = 'running' WHERE id = $1", [job.id])
    const res = await service.fetch(`/v1/jobs/${job.id}/cancel`, { method: 'POST', token: t.alice })
    expect(res.status).toBe(202)
    expect(await res.json()).toMatchObject({
      status: 'running',
      cancel_requested: true,
      version: 3,
    })
    const again = await service.fetch(`/v1/jobs/${job.id}/cancel`, {
      method: 'POST',
      token: t.alice,
    })
    expect(again.status).toBe(202)
    expect(await again.json()).toMatchObject({ cancel_requested: true, version: 3 })
  })

  it.each(['completed', 'failed', 'cancelled'])(
    'answers 409 problem for a %s job and leaves it as it was',
    async (status) => {
      const t = newTenant()
      const job = await createJob(service, t.admin)
      await workerSql(
        `UPDATE job_queue SET status = $2, error = CASE WHEN $2 = 'failed' THEN '{"message":"x"}'::jsonb END WHERE id = $1`,
        [job.id, status],
      )
      const res = await service.fetch(`/v1/jobs/${job.id}/cancel`, {
        method: 'POST',
        token: t.admin,
      })
      await problem(res, 409)
      const read = await service.fetch(`/v1/jobs/${job.id}`, { token: t.admin })
      expect(await read.json()).toMatchObject({ status, version: 2 })
    },
  )
})

describe('problem+json for every 4xx', () => {
  it('answers 400 for a malformed UUID, listing invalid_params', async () => {
    const t = newTenant()
    for (const path of ['/v1/jobs/not-a-uuid', '/v1/jobs/123/cancel']) {
      const res = await service.fetch(path, {
        token: t.admin,
        method: path.endsWith('cancel') ? 'POST' : 'GET',
      })
      const body = await problem(res, 400)
      expect(body.invalid_params).toEqual([{ name: 'path.id', reason: expect.any(String) }])
    }
  })

  it('answers 400 for a body that breaks the schema, naming each field', async () => {
    const t = newTenant()
    const res = await post('/v1/jobs', t.admin, { type: '', max_attempts: 0, priority: 'high' })
    const body = await problem(res, 400)
    const names = (body.invalid_params as Array<{ name: string }>).map((p) => p.name).sort()
    expect(names).toEqual(['body.max_attempts', 'body.priority', 'body.type'])
    await problem(await post('/v1/jobs', t.admin, { type: 'a', colour: 'red' }), 400)
    await problem(await post('/v1/jobs', t.admin, '{"type":'), 400)
    await problem(await post('/v1/jobs', t.admin, '[]'), 400)
  })

  it('answers 401 without a token', async () => {
    await problem(await service.fetch(`/v1/jobs/${randomUUID()}`), 401)
  })

  it('answers 403 to a watch token that tries to list', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    await problem(await service.fetch('/v1/jobs', { token: String(job.watch_token) }), 403)
  })

  it('answers 404 for an unknown route and for a missing job', async () => {
    const t = newTenant()
    await problem(await service.fetch('/v1/nope', { token: t.admin }), 404)
    await problem(await service.fetch('/nope'), 404)
    await problem(await service.fetch(`/v1/jobs/${randomUUID()}`, { token: t.admin }), 404)
  })

  it('answers 409 for cancelling a finished job', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    await post(`/v1/jobs/${job.id}/cancel`, t.admin, {})
    await problem(await post(`/v1/jobs/${job.id}/cancel`, t.admin, {}), 409)
  })

  it('answers 413 for a body over BODY_LIMIT_BYTES', async () => {
    const t = newTenant()
    const res = await small.fetch('/v1/jobs', {
      method: 'POST',
      token: t.admin,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'big', payload: { blob: 'x'.repeat(4096) } }),
    })
    await problem(res, 413)
    const fits = await small.fetch('/v1/jobs', {
      method: 'POST',
      token: t.admin,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'fits', payload: { blob: 'x'.repeat(1000) } }),
    })
    expect(fits.status).toBe(201)
  })

  it('answers 415 for a body that is not JSON', async () => {
    const t = newTenant()
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/xml']) {
      const res = await service.fetch('/v1/jobs', {
        method: 'POST',
        token: t.admin,
        headers: { 'content-type': type },
        body: 'type=a',
      })
      await problem(res, 415)
    }
  })

  it('answers 422 for an Idempotency-Key reused with a different body', async () => {
    const t = newTenant()
    await post('/v1/jobs', t.admin, { type: 'a' }, { 'idempotency-key': 'k1' })
    await problem(
      await post('/v1/jobs', t.admin, { type: 'a', payload: 1 }, { 'idempotency-key': 'k1' }),
      422,
    )
  })
})

// A tiny seeded PRNG (mulberry32), so that a failing case can be reproduced from its seed.
function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

interface FuzzCase {
  name: string
  method: 'GET' | 'POST'
  path: string
  headers?: Record<string, string>
  body?: string | Uint8Array<ArrayBuffer>
}

const NASTY_VALUES = [
  '',
  '%',
  '%zz',
  '%E0%A4%A',
  '%00',
  '%FF%FE',
  '%C0%AF',
  '..%2F..%2Fetc%2Fpasswd',
  '1e309',
  '-0',
  '99999999999999999999999',
  'NaN',
  'Infinity',
  '%E2%98%83',
  '%F0%9F%92%A9',
  'a'.repeat(3000),
  '__proto__',
  'constructor',
  "'; DROP TABLE job_queue; --",
  '[]',
  '{}',
  'null',
  'true',
]

function fuzzCases(seed: number, count: number): FuzzCase[] {
  const random = prng(seed)
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)]!
  const randomBytes = (n: number) =>
    Uint8Array.from({ length: n }, () => Math.floor(random() * 256))
  const deep = (depth: number, open: string, close: string) =>
    open.repeat(depth) + close.repeat(depth)
  const keys = [
    'status',
    'type',
    'limit',
    'cursor',
    'stream',
    'token',
    'x',
    '__proto__',
    'limit[]',
    'status[0]',
  ]
  const segments = [
    ...NASTY_VALUES,
    'NOT-A-UUID',
    `{${randomUUID()}}`,
    `${randomUUID()}x`,
    randomUUID().replace(/-/g, ''),
  ]
  const bodies: Array<() => string | Uint8Array<ArrayBuffer>> = [
    () => randomBytes(1 + Math.floor(random() * 200)),
    () => `{"type":"x","payload":${deep(1 + Math.floor(random() * 20_000), '[', ']')}}`,
    () =>
      `{"type":"x","payload":${deep(1 + Math.floor(random() * 20_000), '{"a":', '}').replace(/}+$/, (m) => '1' + m)}}`,
    () => deep(50_000, '[', ']'),
    () =>
      JSON.stringify({
        type: pick(['x', ['x'], { a: 1 }, 1e308, null, true, '☃', 'a'.repeat(500)]),
      }),
    () =>
      JSON.stringify({
        type: 'x',
        payload: pick([
          1e308,
          -1e308,
          5e-324,
          1.2345678901234568e29,
          '\u0000',
          'a\u0000b',
          { '\u0000': 1 },
          '\ud800',
          { k: '\udfff' },
        ]),
      }),
    () =>
      `{"type":"x","payload":${pick(['1e400', '-1e400', '1' + '0'.repeat(400), '"\\ud800"', '"\\u0000"', '{"\\u0000":1}', '"\\udc00\\ud800"'])}}`,
    () =>
      `{"type":"x","max_attempts":${pick(['0', '-1', '1001', '1.5', '"3"', '1e400', 'null', '[3]', '9007199254740993'])}}`,
    () => JSON.stringify({ type: 'x', priority: pick([1e6, -1e6, 0.1, '1', [], {}]) }),
    () =>
      JSON.stringify({
        type: 'x',
        run_at: pick([
          '0000-01-01T00:00:00Z',
          '9999-12-31T23:59:59Z',
          '2024-02-30T00:00:00Z',
          '2024-01-01T00:00:00+23:59',
          '2024-01-01',
          'yesterday',
          '',
          0,
          ['2024-01-01T00:00:00Z'],
        ]),
      }),
    () => JSON.stringify({ type: 'x', __proto__: { admin: true }, constructor: { prototype: {} } }),
    () => '{"type":"x","__proto__":{"status":"completed"}}',
    () =>
      JSON.stringify({
        type: 'x',
        payload: { [pick(['', ' ', '\ud83d', 'a'.repeat(1000)])]: 'v' },
      }),
    () =>
      pick([
        '',
        ' ',
        'null',
        '"string"',
        '0',
        '[1,2]',
        '{',
        '}',
        '{"type":"x",}',
        '\ufeff{"type":"x"}',
      ]),
  ]

  const cases: FuzzCase[] = []
  for (let i = 0; i < count; i++) {
    const kind = pick(['query', 'query', 'path', 'body', 'body', 'body', 'header'] as const)
    if (kind === 'query') {
      const params = Array.from(
        { length: 1 + Math.floor(random() * 3) },
        () => `${pick(keys)}=${pick(NASTY_VALUES)}`,
      )
      cases.push({ name: `query ${i}`, method: 'GET', path: `/v1/jobs?${params.join('&')}` })
    } else if (kind === 'path') {
      const suffix = pick(['', '/cancel', '/', '/cancel/extra'])
      cases.push({
        name: `path ${i}`,
        method: suffix.startsWith('/cancel') ? 'POST' : 'GET',
        path: `/v1/jobs/${pick(segments)}${suffix}`,
      })
    } else if (kind === 'body') {
      cases.push({
        name: `body ${i}`,
        method: 'POST',
        path: pick(['/v1/jobs', '/v1/jobs', `/v1/jobs/${randomUUID()}/cancel`]),
        headers: {
          'content-type': pick([
            'application/json',
            'application/json; charset=utf-8',
            'application/json; charset=latin1',
            'application/merge-patch+json',
            'text/json',
          ]),
        },
        body: pick(bodies)(),
      })
    } else {
      const method = pick(['GET', 'POST'] as const)
      cases.push({
        name: `header ${i}`,
        method,
        headers: {
          'content-type': 'application/json',
          [pick([
            'idempotency-key',
            'if-none-match',
            'accept',
            'content-encoding',
            'x-request-id',
          ])]: pick([
            '',
            'gzip',
            'deflate',
            'br',
            'identity, gzip',
            'x'.repeat(300),
            '"1", W/"2", *',
            'text/event-stream',
            '*/*;q=0.1',
            'k\u00e9y',
          ]),
        },
        path: method === 'GET' ? `/v1/jobs/${randomUUID()}` : '/v1/jobs',
        body: method === 'GET' ? undefined : '{"type":"hdr"}',
      })
    }
  }
  // Hand-picked cases that broke services like this one before.
  const fixed: FuzzCase[] = [
    { name: 'bad percent-encoding in the path', method: 'GET', path: '/v1/jobs/%E0%A4%A' },
    {
      name: 'bad percent-encoding before cancel',
      method: 'POST',
      path: '/v1/jobs/%E0%A4%A/cancel',
    },
    {
      name: 'bad percent-encoding in the query',
      method: 'GET',
      path: '/v1/jobs?type=%E0%A4%A&status=%',
    },
    {
      name: 'gzip-encoded garbage',
      method: 'POST',
      path: '/v1/jobs',
      headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' },
      body: randomBytes(64),
    },
    {
      name: 'a gzip bomb over the limit',
      method: 'POST',
      path: '/v1/jobs',
      headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' },
      body: new Uint8Array(gzipSync(`{"type":"x","payload":"${'a'.repeat(2_000_000)}"}`)),
    },
    {
      name: 'an unknown content-encoding',
      method: 'POST',
      path: '/v1/jobs',
      headers: { 'content-type': 'application/json', 'content-encoding': 'zstd-nope' },
      body: '{"type":"x"}',
    },
    {
      name: 'NUL inside the payload',
      method: 'POST',
      path: '/v1/jobs',
      headers: { 'content-type': 'application/json' },
      body: '{"type":"x","payload":{"note":"a\\u0000b"}}',
    },
    {
      name: 'a lone surrogate in the payload',
      method: 'POST',
      path: '/v1/jobs',
      headers: { 'content-type': 'application/json' },
      body: '{"type":"x","payload":"\\ud800"}',
    },
    {
      name: 'run_at in year 0',
      method: 'POST',
      path: '/v1/jobs',
      headers: { 'content-type': 'application/json' },
      body: '{"type":"x","run_at":"0000-01-01T00:00:00Z"}',
    },
    {
      name: 'deeply nested payload',
      method: 'POST',
      path: '/v1/jobs',
      headers: { 'content-type': 'application/json' },
      body: `{"type":"x","payload":${'['.repeat(100_000)}${']'.repeat(100_000)}}`,
    },
    {
      name: 'a cursor with a valid shape and an impossible date',
      method: 'GET',
      path: `/v1/jobs?cursor=${cursorOf('9999-99-99T99:99:99.000000Z')}`,
    },
  ]
  return [...fixed, ...cases]
}

describe('malformed input', () => {
  const seed = Number(process.env.FUZZ_SEED ?? 20_241_124)

  it(`never answers 500 to ~200 malformed query strings, paths, headers and bodies (seed ${seed})`, async () => {
    const t = newTenant()
    const failures: string[] = []
    for (const c of fuzzCases(seed, 190)) {
      let res: Response
      try {
        res = await service.fetch(c.path, {
          method: c.method,
          token: t.admin,
          headers: c.headers,
          body: c.body,
        })
      } catch (error) {
        failures.push(`${c.name} ${c.method} ${c.path.slice(0, 80)}: fetch failed ${String(error)}`)
        continue
      }
      const text = await res.text()
      const bodyHint =
        typeof c.body === 'string' ? c.body.slice(0, 80) : c.body ? `<${c.body.length} bytes>` : ''
      if (res.status >= 500) {
        failures.push(
          `${c.name} ${c.method} ${c.path.slice(0, 80)} ${bodyHint} → ${res.status} ${text.slice(0, 200)}`,
        )
      } else if (res.status >= 400) {
        const type = res.headers.get('content-type') ?? ''
        if (!type.startsWith('application/problem+json'))
          failures.push(`${c.name} → ${res.status} with content-type ${type}`)
        else if ((JSON.parse(text) as Json).status !== res.status)
          failures.push(`${c.name} → ${res.status} with a problem that says ${text.slice(0, 80)}`)
      }
    }
    expect(failures).toEqual([])
    // The service is still healthy afterwards.
    expect((await service.fetch('/v1/jobs', { token: t.admin })).status).toBe(200)
  }, 120_000)

  it('rejects a NUL character in the payload with 400, not 500', async () => {
    const t = newTenant()
    const res = await post('/v1/jobs', t.admin, '{"type":"x","payload":{"note":"a\\u0000b"}}')
    await problem(res, 400)
  })

  it('rejects a payload nested deeper than the limit with 400', async () => {
    const t = newTenant()
    const res = await post(
      '/v1/jobs',
      t.admin,
      `{"type":"x","payload":${'['.repeat(10_000)}${']'.repeat(10_000)}}`,
    )
    const body = await problem(res, 400)
    expect(body.invalid_params).toEqual([expect.objectContaining({ name: 'body.payload' })])
    const ok = await post(
      '/v1/jobs',
      t.admin,
      `{"type":"x","payload":${'['.repeat(30)}${']'.repeat(30)}}`,
    )
    expect(ok.status).toBe(201)
  })

  it('rejects a run_at PostgreSQL cannot store with 400', async () => {
    const t = newTenant()
    const res = await post('/v1/jobs', t.admin, { type: 'x', run_at: '0000-01-01T00:00:00Z' })
    const body = await problem(res, 400)
    expect(body.invalid_params).toEqual([expect.objectContaining({ name: 'body.run_at' })])
  })
})

function cursorOf(createdAt: string, id: string = randomUUID()): string {
  return Buffer.from(JSON.stringify([createdAt, id])).toString('base64url')
}

async function countJobs(tenantId: string): Promise<number> {
  const { rows } = await pool.query<{ n: string }>(
    'SELECT count(*) AS n FROM job_queue WHERE tenant_id = $1',
    [tenantId],
  )
  return Number(rows[0]!.n)
}
