// The demo worker that `npm start` runs: a `demo` job walks its five steps and completes, a
// `demo-fail` job fails for good with code demo_failure, and a cancel stops a demo job at once.
import { randomUUID } from 'node:crypto'
import pg from 'pg'
import { DEMO_STEPS, startDemoWorker, type DemoWorker } from '../../src/dev/demo-worker.js'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'

let database: TestDatabase
let pool: pg.Pool
let demo: DemoWorker

beforeAll(async () => {
  database = await createTestDatabase()
  pool = new pg.Pool({ connectionString: database.url, max: 8 })
  demo = startDemoWorker({ pool })
})
afterAll(async () => {
  await demo?.stop({ graceMs: 0 })
  await pool?.end()
  await database?.drop()
})

interface Row {
  status: string
  progress: number
  step: string | null
  eta_seconds: number | null
  result: { message: string; steps: number; elapsed_ms: number } | null
  error: { message: string; code: string | null } | null
  attempts: number
}

async function insertJob(type: string, payload: object): Promise<string> {
  const { rows } = await pool.query<{ id: string }>(
    'INSERT INTO job_queue (tenant_id, type, payload) VALUES ($1, $2, $3) RETURNING id',
    [randomUUID(), type, payload],
  )
  return rows[0]!.id
}

/**
 * Inserts a job once LISTEN is in place (so no NOTIFY is missed) and follows it until it is
 * terminal; returns the job's id and the statuses of its NOTIFYs.
 */
async function runJob(
  type: string,
  payload: object,
  onRunning?: (id: string) => Promise<void>,
): Promise<{ id: string; statuses: string[] }> {
  const client = new pg.Client({ connectionString: database.url })
  await client.connect()
  const statuses: string[] = []
  let id = ''
  const pending: Notification[] = []
  try {
    await client.query('LISTEN jobwire')
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`job ${id} did not finish in time`)), 20_000)
      let sawRunning = false
      const onNotification = (n: Notification) => {
        if (n.id !== id) return
        statuses.push(n.status)
        if (n.status === 'running' && !sawRunning) {
          sawRunning = true
          onRunning?.(id).catch(reject)
        }
        if (['completed', 'failed', 'cancelled'].includes(n.status)) {
          clearTimeout(timer)
          resolve()
        }
      }
      // Until the insert returns the id, notifications wait in `pending`.
      client.on('notification', (message) => {
        const n = JSON.parse(message.payload ?? '{}') as Notification
        if (id) onNotification(n)
        else pending.push(n)
      })
      insertJob(type, payload).then((newId) => {
        id = newId
        for (const n of pending.splice(0)) onNotification(n)
      }, reject)
    })
  } finally {
    await client.end()
  }
  return { id, statuses }
}

interface Notification {
  id: string
  status: string
}

async function readJob(id: string): Promise<Row> {
  const { rows } = await pool.query<Row>('SELECT * FROM job_queue WHERE id = $1', [id])
  return rows[0]!
}

describe('the demo worker', () => {
  it('moves a demo job through its steps with progress and completes it with a result', async () => {
    const { id, statuses } = await runJob('demo', { seconds: 1 })
    expect(statuses[0]).toBe('queued')
    // Several running versions carry the progress.
    expect(statuses.filter((s) => s === 'running').length).toBeGreaterThanOrEqual(3)
    expect(statuses.at(-1)).toBe('completed')
    const row = await readJob(id)
    expect(row).toMatchObject({
      status: 'completed',
      progress: 100,
      step: DEMO_STEPS.at(-1),
      eta_seconds: 0,
      result: { message: 'Demo job finished', steps: 5 },
    })
  })

  it('fails a demo-fail job for good with code demo_failure after a few steps', async () => {
    const { id } = await runJob('demo-fail', { seconds: 1 })
    const row = await readJob(id)
    expect(row).toMatchObject({ status: 'failed', attempts: 1, step: DEMO_STEPS[1] })
    expect(row.progress).toBeCloseTo(40)
    expect(row.error).toEqual({
      message: 'Demo failure: the simulated upstream service refused the request',
      code: 'demo_failure',
    })
  })

  it('stops a running demo job soon after its cancel is requested', async () => {
    const { id, statuses } = await runJob('demo', { seconds: 60 }, async (id) => {
      await pool.query('UPDATE job_queue SET cancel_requested = true WHERE id = $1', [id])
    })
    expect(statuses.at(-1)).toBe('cancelled')
    expect((await readJob(id)).progress).toBeLessThan(50)
  })
})
