// Every version a writer commits reaches a watcher that keeps up, even written back to back:
// small changes (progress, step, eta, status to running or cancelled, …) are built from
// their notification, on top of the version before, without reading the row; and what is
// built is the document a read gives, byte for byte. A change a notification cannot carry
// (a result, an error, a completion) is read, as before.
import { randomUUID } from 'node:crypto'
import pg from 'pg'
import type { JobDocumentRow } from '../../src/db/jobs.js'
import { toJobDocument } from '../../src/events/document.js'
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

const COLUMNS = `id, tenant_id, owner_id, type, status, progress, step, eta_seconds, result, error,
  attempts, max_attempts, cancel_requested, version, created_at, updated_at, started_at,
  completed_at`

/** One committed change, and the document a read of that row renders. */
async function change(id: string, set: string, values: unknown[] = []): Promise<string> {
  const { rows } = await sql.query<JobDocumentRow>(
    `UPDATE job_queue SET ${set} WHERE id = $1 RETURNING ${COLUMNS}`,
    [id, ...values],
  )
  return JSON.stringify(toJobDocument(rows[0]!))
}

describe('every version, built from its notification', () => {
  it('delivers each of 40 back-to-back changes as the read would render it', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    const stream = await openSse(`${service.url}/v1/jobs/${job.id}/events?format=full`, {
      headers: { authorization: `Bearer ${t.admin}` },
    })
    try {
      await stream.next('snapshot')
      const before = { ...service.hub.stats }
      const expected: string[] = []
      expected.push(await change(job.id, "status = 'running', attempts = 1"))
      for (let i = 1; i <= 38; i++) {
        // Progress with a binary-unfriendly fraction (the trigger rounds to 2 decimals), steps
        // that JSON must escape, an ETA that comes and goes: no pause between them.
        expected.push(
          await change(job.id, 'progress = $2, step = $3, eta_seconds = $4', [
            (i * 100) / 39,
            i % 3 === 0 ? `ünïcödé "${i}" \\ ${'é'.repeat(i)}` : `step ${i}`,
            i % 4 === 0 ? null : 40 - i,
          ]),
        )
      }
      expected.push(await change(job.id, "status = 'cancelled'"))
      const received: string[] = []
      while (received.length < expected.length) {
        const event = await stream.next('snapshot')
        received.push(event.data)
      }
      expect(received).toEqual(expected)
      // None of them needed a read.
      expect(service.hub.stats.fetches - before.fetches).toBe(0)
      expect(service.hub.stats.built - before.built).toBe(40)
      const read = await service.fetch(`/v1/jobs/${job.id}`, { token: t.admin })
      expect(await read.text()).toBe(expected.at(-1))
    } finally {
      stream.close()
    }
  })

  it('reads a change that carries a result or an error, and keeps building after it', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    const stream = await openSse(`${service.url}/v1/jobs/${job.id}/events?format=full`, {
      headers: { authorization: `Bearer ${t.admin}` },
    })
    try {
      await stream.next('snapshot')
      const received: string[] = []
      const expected: string[] = []
      const step = async (set: string, values: unknown[] = []) => {
        expected.push(await change(job.id, set, values))
        received.push((await stream.next('snapshot')).data)
      }
      await step("status = 'running', attempts = 1")
      // A retry: its error travels only through a read; the next changes are built on it.
      await step("status = 'queued', error = $2", [JSON.stringify({ message: 'boom', code: 'E1' })])
      await step("status = 'running', attempts = 2")
      await step('progress = 50')
      await step("status = 'completed', result = $2", [JSON.stringify({ ok: 1 })])
      expect(received).toEqual(expected)
      expect(JSON.parse(received[3]!)).toMatchObject({
        last_error: { message: 'boom', code: 'E1' },
      })
    } finally {
      stream.close()
    }
  })

  it('sends a new job to the tenant feed without reading it', async () => {
    const t = newTenant()
    const feed = await openSse(`${service.url}/v1/events`, {
      headers: { authorization: `Bearer ${t.admin}` },
    })
    try {
      const before = { ...service.hub.stats }
      const { rows } = await sql.query<JobDocumentRow>(
        `INSERT INTO job_queue (tenant_id, owner_id, type) VALUES ($1, 'sql', 'by.hand')
         RETURNING ${COLUMNS}`,
        [t.tenantId],
      )
      const snapshot = await feed.next('snapshot')
      expect(JSON.stringify(snapshot.json<{ doc: unknown }>().doc)).toBe(
        JSON.stringify(toJobDocument(rows[0]!)),
      )
      expect(service.hub.stats.fetches - before.fetches).toBe(0)
    } finally {
      feed.close()
    }
  })

  it('delivers a worker’s twenty progress reports written back to back, then its completion', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin, { type: `every-${randomUUID().slice(0, 8)}` })
    const stream = await openSse(`${service.url}/v1/jobs/${job.id}/events`, {
      headers: { authorization: `Bearer ${t.admin}` },
    })
    try {
      await stream.next('snapshot')
      await sql.query("SELECT * FROM jobwire_claim('w-1', ARRAY[$1], 1, 30)", [job.type])
      for (let i = 1; i <= 20; i++) {
        await sql.query("SELECT * FROM jobwire_progress($1, 'w-1', $2, $3)", [
          job.id,
          i * 4.5,
          `part ${i}`,
        ])
      }
      await sql.query(`SELECT version FROM jobwire_complete($1, 'w-1', '{"done": true}')`, [job.id])
      const ids: string[] = []
      for (;;) {
        const event = await stream.next()
        if (event.event === 'end') break
        ids.push(event.id!)
      }
      // The claim (version 2), twenty reports (3–22) and the completion (23): none merged.
      expect(ids).toEqual(Array.from({ length: 22 }, (_, i) => String(i + 2)))
    } finally {
      stream.close()
    }
  })

  it('renders timestamps in the notification as the reads parse them, to the millisecond', async () => {
    // Microseconds either side of millisecond boundaries, before and after 1970.
    const { rows } = await sql.query<{ at: Date; text: string }>(
      `SELECT t AS at, to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS text
       FROM (SELECT timestamptz '1969-12-31 23:59:59+00' + (i * 137 || ' microseconds')::interval
               + (i || ' days')::interval * 365 AS t
             FROM generate_series(1, 2000) i) v`,
    )
    for (const { at, text } of rows) expect(text).toBe(at.toISOString())
  })
})
