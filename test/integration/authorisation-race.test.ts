// A change committed while a subscription's authorising read is in flight must never reach a
// caller that read then refuses: another tenant's admin, or another member of the tenant.
// Every transport is attacked the same way: a writer changes the victim's job as fast as the
// database takes it while unauthorised callers open watches on it, hundreds of times. Each
// answer must be a 404 (or, on multiplexed transports, a message naming the job: SSE's
// `unavailable`, WebSocket's `error`) and nothing of the job — its document, a patch, its
// type or step — may appear in any byte.
import pg from 'pg'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import { createJob, newTenant, startTestService, type TestService } from '../helpers/service.js'
import { openSse } from '../helpers/sse.js'
import { openWs } from '../helpers/ws.js'

let database: TestDatabase
let service: TestService
let writer: Writer

const victim = newTenant()
const attacker = newTenant()
/** Recognisable in any byte a leak would carry. */
const SECRET_TYPE = 'victim.secret-report'
let victimJob: string

/** Changes one row back to back on its own connection until stopped; counts commits. */
class Writer {
  commits = 0
  private isStopped = false
  private done: Promise<void> | undefined
  constructor(private readonly client: pg.Client) {}

  start(jobId: string): void {
    this.done = (async () => {
      while (!this.isStopped) {
        this.commits++
        await this.client.query(
          `UPDATE job_queue SET progress = ($2::int % 100), step = 'secret step ' || $2::text
           WHERE id = $1`,
          [jobId, this.commits],
        )
      }
    })()
  }

  async stop(): Promise<void> {
    this.isStopped = true
    await this.done
    await this.client.end()
  }
}

beforeAll(async () => {
  database = await createTestDatabase()
  service = await startTestService(database.url, {
    RATE_LIMIT_PER_USER: '0',
    RATE_LIMIT_PER_TENANT: '0',
    MAX_STREAMS_PER_USER: '0',
    MAX_STREAMS_PER_TENANT: '0',
  })
  victimJob = (await createJob(service, victim.alice, { type: SECRET_TYPE })).id
  const client = new pg.Client({ connectionString: database.url })
  await client.connect()
  await client.query(`UPDATE job_queue SET status = 'running' WHERE id = $1`, [victimJob])
  writer = new Writer(client)
  writer.start(victimJob)
})
afterAll(async () => {
  await writer?.stop()
  await service?.close()
  await database?.drop()
})

const outsiders = () => [
  { who: "another tenant's admin", token: attacker.admin },
  { who: 'another member of the tenant', token: victim.bob },
]

/** Runs `attempt` `count` times, `concurrency` at a time; returns every leak it reported. */
async function attack(
  count: number,
  concurrency: number,
  attempt: () => Promise<string | undefined>,
): Promise<string[]> {
  const leaks: string[] = []
  let next = 0
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        next++
        const leak = await attempt()
        if (leak !== undefined) leaks.push(leak)
      }
    }),
  )
  return leaks
}

function leaksJob(text: string): boolean {
  return text.includes(SECRET_TYPE) || text.includes('secret step')
}

describe('a change during the authorising read never reaches an unauthorised caller', () => {
  it.each(outsiders())('long-poll: $who gets 404 every time', async ({ token }) => {
    const before = writer.commits
    const leaks = await attack(600, 8, async () => {
      const res = await service.fetch(`/v1/jobs/${victimJob}/wait?since=0&timeout=1`, { token })
      const body = await res.text()
      if (res.status !== 404 || leaksJob(body)) return `${res.status} ${body.slice(0, 120)}`
      return undefined
    })
    expect(leaks).toEqual([])
    // The attack raced real changes: the writer committed throughout.
    expect(writer.commits - before).toBeGreaterThan(100)
  })

  it.each(outsiders())('single-job SSE: $who gets 404 before any byte', async ({ token }) => {
    const leaks = await attack(300, 8, async () => {
      const res = await service.fetch(`/v1/jobs/${victimJob}/events`, { token })
      const body = await res.text()
      if (res.status !== 404 || leaksJob(body)) return `${res.status} ${body.slice(0, 120)}`
      return undefined
    })
    expect(leaks).toEqual([])
  })

  it.each(outsiders())(
    'multiplexed SSE: $who sees the job only as refused, next to its own job',
    async ({ token }) => {
      const own = (await createJob(service, token === attacker.admin ? attacker.admin : victim.bob))
        .id
      const leaks = await attack(150, 6, async () => {
        const stream = await openSse(`${service.url}/v1/events?jobs=${victimJob},${own}`, {
          headers: { authorization: `Bearer ${token}` },
        })
        try {
          if (stream.status !== 200) return `status ${stream.status}`
          // The refusal is written before the first snapshot.
          await stream.next('snapshot')
          const refused = stream.events.find((e) => e.event === 'unavailable')
          if (!refused) return 'no unavailable event'
          const leak = stream.events.find(
            (e) => e.event !== 'unavailable' && (leaksJob(e.data) || e.data.includes(victimJob)),
          )
          if (leak) return `${leak.event} ${leak.data.slice(0, 120)}`
          if (!refused.data.includes(victimJob))
            return `unavailable event without the job: ${refused.data}`
          return undefined
        } finally {
          stream.close()
        }
      })
      expect(leaks).toEqual([])
    },
  )

  it.each(outsiders())(
    'WebSocket subscribe: $who gets an error, never the job',
    async ({ token }) => {
      const ws = await openWs(`${service.url.replace('http', 'ws')}/v1/ws?token=${token}`)
      try {
        for (let i = 0; i < 300; i++) {
          ws.send({ op: 'subscribe', jobs: [victimJob] })
          const answer = await ws.next((m) => m.job === victimJob)
          expect(answer).toMatchObject({ type: 'error', status: 404, job: victimJob })
        }
        const leaked = ws.messages.filter((m) => m.type !== 'error' || leaksJob(JSON.stringify(m)))
        expect(leaked).toEqual([])
      } finally {
        ws.close()
      }
    },
  )

  it.each(outsiders())(
    'WebSocket on the job URL: $who gets a 404 error and a close, never the job',
    async ({ token }) => {
      const leaks = await attack(150, 6, async () => {
        const ws = await openWs(
          `${service.url.replace('http', 'ws')}/v1/jobs/${victimJob}?token=${token}`,
        )
        await ws.closed
        const [first, ...rest] = ws.messages
        if (first?.type !== 'error' || first.status !== 404 || rest.length > 0)
          return JSON.stringify(ws.messages).slice(0, 200)
        if (leaksJob(JSON.stringify(ws.messages))) return JSON.stringify(first)
        return undefined
      })
      expect(leaks).toEqual([])
    },
  )
})
