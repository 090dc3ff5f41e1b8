// EVENT_SOURCE=replication, on a server with wal_level=logical (the integration-replication
// project): rows arrive whole from the stream, decoded exactly as a SELECT decodes them, with
// no read by the hub and no NOTIFY from the writers; a fleet with listeners keeps NOTIFY on.
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { JOB_DOCUMENT_COLUMNS } from '../../src/db/jobs.js'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import { createJob, newTenant, startTestService, type TestService } from '../helpers/service.js'
import { openSse, type SseClient } from '../helpers/sse.js'

type Doc = Record<string, unknown> & { version: number }

let database: TestDatabase
let sql: pg.Client
const clients: SseClient[] = []
const services: TestService[] = []

beforeAll(async () => {
  database = await createTestDatabase()
  sql = new pg.Client({ connectionString: database.url })
  await sql.connect()
})
afterEach(async () => {
  for (const client of clients.splice(0)) client.close()
  await Promise.all(services.splice(0).map((s) => s.close()))
})
afterAll(async () => {
  await sql?.end()
  await database?.drop()
})

async function start(env: Record<string, string> = {}): Promise<TestService> {
  const service = await startTestService(database.url, { SWEEP_INTERVAL_MS: '0', ...env })
  services.push(service)
  return service
}

async function open(service: TestService, path: string, token: string): Promise<SseClient> {
  const client = await openSse(service.url + path, {
    headers: { authorization: `Bearer ${token}` },
  })
  clients.push(client)
  expect(client.status).toBe(200)
  return client
}

async function until(check: () => Promise<boolean>, what: string, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

async function notifySwitch(): Promise<boolean> {
  const { rows } = await sql.query<{ notify: boolean }>('SELECT notify FROM jobwire_event_source')
  return rows[0]!.notify
}

describe('the replication stream', () => {
  it('delivers each change as the document GET returns, byte for byte, with no read', async () => {
    const service = await start()
    const t = newTenant()
    const job = await createJob(service, t.admin)
    const stream = await open(service, `/v1/jobs/${job.id}/events?format=full`, t.admin)
    await stream.next('snapshot')
    const readsBefore = service.hub.stats.fetches

    const changes: Array<[string, unknown[]]> = [
      [
        `UPDATE job_queue SET status = 'running', progress = 100.0 / 3, eta_seconds = 7,
            step = $2 WHERE id = $1`,
        [job.id, 'ünïcödé ✓ "quoted" \\ back\nslash 🚀'],
      ],
      [`UPDATE job_queue SET progress = 1e-7, attempts = 2, step = NULL WHERE id = $1`, [job.id]],
      [
        `UPDATE job_queue SET status = 'completed', progress = 100, result = $2 WHERE id = $1`,
        [
          job.id,
          // jsonb text as a writer sends it: a number beyond 2^53, a negative zero, unicode.
          '{"url": "https://x.example/é", "big": 12345678901234567890, "n": [1.5, -0.0, 1e400]}',
        ],
      ],
    ]
    for (const [text, values] of changes) {
      await sql.query(text, values)
      const event = await stream.next('snapshot')
      const res = await service.fetch(`/v1/jobs/${job.id}`, { token: t.admin })
      expect(event.data).toBe(await res.text())
    }
    expect(service.hub.stats.fetches).toBe(readsBefore)
  })

  it('confirms a transaction to the server once the hub has applied it', async () => {
    const service = await start()
    const t = newTenant()
    const job = await createJob(service, t.admin)
    const stream = await open(service, `/v1/jobs/${job.id}/events`, t.admin)
    await stream.next('snapshot')
    await sql.query(`UPDATE job_queue SET progress = 5 WHERE id = $1`, [job.id])
    const { rows } = await sql.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')
    await stream.next('patch')
    const confirmedPast = async () =>
      (
        await sql.query<{ ok: boolean }>(
          `SELECT confirmed_flush_lsn >= $2::pg_lsn AS ok FROM pg_replication_slots
            WHERE slot_name = $1`,
          [(service.listener as { slotName?: string }).slotName, rows[0]!.lsn],
        )
      ).rows[0]?.ok === true
    // Well within the 15 s between the stream's own status updates.
    await until(confirmedPast, "the slot's confirmed position to pass the commit", 5_000)
  })

  it('makes the writers emit no NOTIFY', async () => {
    const service = await start()
    await until(async () => !(await notifySwitch()), 'the NOTIFY switch to go off')
    const listener = new pg.Client({ connectionString: database.url })
    await listener.connect()
    try {
      const payloads: string[] = []
      listener.on('notification', (m) => payloads.push(m.payload ?? ''))
      await listener.query('LISTEN jobwire')
      const t = newTenant()
      const job = await createJob(service, t.admin)
      const stream = await open(service, `/v1/jobs/${job.id}/events`, t.admin)
      await stream.next('snapshot')
      await sql.query(`UPDATE job_queue SET progress = 50 WHERE id = $1`, [job.id])
      await stream.next('patch') // the change went through the stream
      // Notifications arrive in commit order: once the marker is here, a NOTIFY of the
      // writes above would have been too.
      await sql.query(`SELECT pg_notify('jobwire', 'marker')`)
      await until(async () => payloads.includes('marker'), 'the marker notification')
      expect(payloads).toEqual(['marker'])
    } finally {
      await listener.end()
    }
  })

  it('ends the watches of a deleted job', async () => {
    const service = await start()
    const t = newTenant()
    const job = await createJob(service, t.admin)
    const stream = await open(service, `/v1/jobs/${job.id}/events`, t.admin)
    await stream.next('snapshot')
    await sql.query(`DELETE FROM job_queue WHERE id = $1`, [job.id])
    expect((await stream.next('end')).json()).toEqual({
      type: 'end',
      job: job.id,
      version: job.version,
      status: 'deleted',
    })
    await stream.closed
  })

  it('reads a row the stream carries without its unchanged large column', async () => {
    const service = await start()
    const t = newTenant()
    const job = await createJob(service, t.admin)
    const stream = await open(service, `/v1/jobs/${job.id}/events?format=full`, t.admin)
    await stream.next('snapshot')
    // A large result stored out of line (TOAST) while the job still runs; the next update
    // leaves it unchanged, so the stream does not repeat it.
    const big = { blob: randomBytes(24_000).toString('base64') }
    await sql.query(`UPDATE job_queue SET status = 'running', result = $2 WHERE id = $1`, [
      job.id,
      JSON.stringify(big),
    ])
    await stream.next('snapshot')
    const readsBefore = service.hub.stats.fetches
    await sql.query(`UPDATE job_queue SET status = 'completed' WHERE id = $1`, [job.id])
    const event = await stream.next('snapshot')
    expect(event.json<Doc>()).toMatchObject({ status: 'completed', result: big, version: 3 })
    expect(service.hub.stats.fetches).toBe(readsBefore + 1)
  })

  it('keeps NOTIFY on while a listener of the fleet is connected, and off once it left', async () => {
    const t = newTenant()
    const listening = await start({ EVENT_SOURCE: 'notify' })
    expect(await notifySwitch()).toBe(true)
    const replicating = await start()
    const job = await createJob(replicating, t.admin)
    const onListening = await open(listening, `/v1/jobs/${job.id}/events`, t.admin)
    const onReplicating = await open(replicating, `/v1/jobs/${job.id}/events`, t.admin)
    await onListening.next('snapshot')
    await onReplicating.next('snapshot')

    // The replicating instance checked the switch as its stream started, and saw the listener.
    await sql.query(`UPDATE job_queue SET progress = 10 WHERE id = $1`, [job.id])
    await onListening.next('patch')
    await onReplicating.next('patch')
    expect(await notifySwitch()).toBe(true)

    clients.splice(clients.indexOf(onListening), 1)
    onListening.close()
    await listening.close()
    services.splice(services.indexOf(listening), 1)
    await until(async () => !(await notifySwitch()), 'the NOTIFY switch to go off')
    await sql.query(`UPDATE job_queue SET progress = 20 WHERE id = $1`, [job.id])
    await onReplicating.next('patch')

    // A listener that starts turns it on before it is ready: nothing it watches is missed.
    const again = await start({ EVENT_SOURCE: 'notify' })
    expect(await notifySwitch()).toBe(true)
    const onAgain = await open(again, `/v1/jobs/${job.id}/events`, t.admin)
    await onAgain.next('snapshot')
    await sql.query(`UPDATE job_queue SET progress = 30 WHERE id = $1`, [job.id])
    expect((await onAgain.next('patch')).id).toBe('4')
  })

  it('turns NOTIFY back on when the last replicating instance stops', async () => {
    const service = await start()
    await until(async () => !(await notifySwitch()), 'the NOTIFY switch to go off')
    services.splice(services.indexOf(service), 1)
    await service.close()
    expect(await notifySwitch()).toBe(true)
  })

  it('publishes exactly the columns the event pipeline reads', async () => {
    const { rows } = await sql.query<{ attnames: string[] }>(
      `SELECT attnames::text[] AS attnames FROM pg_publication_tables WHERE pubname = 'jobwire_job_queue'`,
    )
    expect(rows).toHaveLength(1)
    expect([...rows[0]!.attnames].sort()).toEqual([...JOB_DOCUMENT_COLUMNS].sort())
  })
})
