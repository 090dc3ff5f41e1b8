// The cluster mode (WEB_CONCURRENCY=2), run as an operator runs it: `node src/main.ts` as a
// child process on a free port. Each worker is a whole instance with its own listener; a
// change reaches watchers on both; a user's stream cap and rate limit hold across both (the
// primary counts them); a killed worker is replaced and its stream slots come back; SIGTERM
// to the primary drains everything and exits 0.
import { spawn, type ChildProcess } from 'node:child_process'
import http from 'node:http'
import { createServer } from 'node:net'
import pg from 'pg'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import { parseExposition, sampleValue } from '../helpers/metrics.js'
import { children, commandLine, isAlive } from '../helpers/processes.js'
import { newTenant, TEST_JWT_SECRET, tokenFor } from '../helpers/service.js'
import { openSse, type SseClient } from '../helpers/sse.js'
import { until } from '../helpers/ws.js'

let database: TestDatabase
let sql: pg.Client
let primary: ChildProcess
let base: string
let output = ''
const streams: SseClient[] = []

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address()
      srv.close(() => resolve(typeof address === 'object' && address ? address.port : 0))
    })
  })
}

/** One request on a connection of its own (the cluster deals connections round robin). */
function get(path: string, token?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(
      `${base}${path}`,
      { agent: false, headers: token ? { authorization: `Bearer ${token}` } : {} },
      (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (c: string) => (body += c))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
      },
    )
    req.on('error', reject)
  })
}

const listeners = async () =>
  (
    await sql.query<{ pid: number }>(
      `SELECT pid FROM pg_stat_activity
        WHERE datname = current_database() AND application_name = 'jobwire-listener'`,
    )
  ).rows.map((r) => r.pid)

/**
 * The worker processes: the primary's own children that run node. Not every child is a worker:
 * with a cold transform cache tsx starts an esbuild service beside them.
 */
const workers = () =>
  children(primary.pid!).filter(
    (pid) => isAlive(pid) && commandLine(pid).startsWith(process.execPath),
  )

async function stream(path: string, token: string): Promise<SseClient> {
  const s = await openSse(`${base}${path}`, { headers: { authorization: `Bearer ${token}` } })
  streams.push(s)
  return s
}

async function createJob(token: string): Promise<{ id: string }> {
  const res = await fetch(`${base}/v1/jobs`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ type: 'cluster.test' }),
  })
  expect(res.status).toBe(201)
  return (await res.json()) as { id: string }
}

beforeAll(async () => {
  database = await createTestDatabase()
  sql = new pg.Client({ connectionString: database.url })
  await sql.connect()
  const port = await freePort()
  base = `http://127.0.0.1:${port}`
  primary = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    env: {
      PATH: process.env.PATH,
      NODE_ENV: 'test',
      DATABASE_URL: database.url,
      JWT_SECRET: TEST_JWT_SECRET,
      HOST: '127.0.0.1',
      PORT: String(port),
      WEB_CONCURRENCY: '2',
      MIGRATE_ON_START: 'false',
      LOG_LEVEL: 'warn',
      SHUTDOWN_TIMEOUT_MS: '2000',
      MAX_STREAMS_PER_USER: '3',
      RATE_LIMIT_PER_USER: '12',
      LEASE_REAPER_INTERVAL_MS: '0',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  primary.stdout!.on('data', (c: Buffer) => (output += c.toString()))
  primary.stderr!.on('data', (c: Buffer) => (output += c.toString()))
  const deadline = Date.now() + 30_000
  for (;;) {
    const ready = await get('/readyz').catch(() => undefined)
    if (ready?.status === 200 && (await listeners()).length === 2) break
    if (Date.now() > deadline) throw new Error(`the cluster never became ready:\n${output}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}, 60_000)

afterEach(() => {
  for (const s of streams.splice(0)) s.close()
})

afterAll(async () => {
  for (const s of streams.splice(0)) s.close()
  if (primary && primary.exitCode === null) {
    primary.kill('SIGKILL')
    for (const pid of workers()) process.kill(pid, 'SIGKILL')
  }
  await sql?.end()
  await database?.drop()
})

describe('WEB_CONCURRENCY=2', () => {
  it('runs two whole instances, and a change reaches watchers on both', async () => {
    expect(workers()).toHaveLength(2)
    const t = newTenant()
    const job = await createJob(t.admin)
    // Three connections one after the other, dealt round robin: two on one worker, one on
    // the other. Each worker's /metrics counts its own.
    const clients: SseClient[] = []
    for (let i = 0; i < 3; i++) {
      const client = await stream(`/v1/jobs/${job.id}/events`, t.admin)
      await client.next('snapshot')
      clients.push(client)
    }
    const scrape = async () =>
      sampleValue(parseExposition((await get('/metrics')).body), 'jobwire_open_streams', {
        transport: 'sse',
      })
    const seen = new Set<number | undefined>()
    for (let i = 0; i < 4; i++) seen.add(await scrape())
    expect([...seen].sort()).toEqual([1, 2])
    await sql.query(`UPDATE job_queue SET progress = 33 WHERE id = $1`, [job.id])
    for (const c of clients) {
      const patch = await c.next('patch')
      expect(patch.json()).toContainEqual({ op: 'replace', path: '/progress', value: 33 })
    }
  })

  it("holds a user's stream cap and rate limit across the workers", async () => {
    const t = newTenant()
    const job = await createJob(t.bob)
    const open = await Promise.all([1, 2, 3].map(() => stream(`/v1/jobs/${job.id}/events`, t.bob)))
    for (const s of open) expect(s.status).toBe(200)
    // Per worker, 3 would allow 6: the fourth is refused on whichever worker it lands.
    for (let i = 0; i < 2; i++) {
      const refused = await get(`/v1/jobs/${job.id}/events`, t.bob)
      expect(refused.status).toBe(429)
      expect(refused.body).toContain('the limit is 3')
    }
    const carol = tokenFor({ tenantId: t.tenantId, role: 'member', sub: 'carol' })
    const answers: number[] = []
    for (let i = 0; i < 14; i++) answers.push((await get('/v1/jobs', carol)).status)
    expect(answers).toEqual([...Array<number>(12).fill(200), 429, 429])
  })

  it('replaces a killed worker, and frees the stream slots it held', async () => {
    const t = newTenant()
    const job = await createJob(t.alice)
    const open = await Promise.all(
      [1, 2, 3].map(() => stream(`/v1/jobs/${job.id}/events`, t.alice)),
    )
    for (const s of open) await s.next('snapshot')
    const closed = new Set<SseClient>()
    for (const s of open) void s.closed.then(() => closed.add(s))
    expect((await get(`/v1/jobs/${job.id}/events`, t.alice)).status).toBe(429)
    // Three connections in a row, dealt round robin: the victim holds at least one of them.
    const victim = workers()[0]!
    process.kill(victim, 'SIGKILL')
    await until(() => !isAlive(victim), 'the worker to die')
    await until(() => closed.size > 0, "the victim's streams to end")
    await until(
      () => workers().length === 2 && !workers().includes(victim),
      'a replacement worker',
      20_000,
    )
    const deadline = Date.now() + 20_000
    while ((await listeners()).length !== 2) {
      if (Date.now() > deadline) throw new Error('the replacement never listened')
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    // Its slots are free again: exactly as many new streams open as it held, then the cap.
    let opened = 0
    for (;;) {
      const s = await stream(`/v1/jobs/${job.id}/events`, t.alice)
      if (s.status === 429) break
      expect(s.status).toBe(200)
      if (++opened > 3) throw new Error('the cap no longer holds')
    }
    expect(opened).toBe(closed.size)
  }, 60_000)

  it('drains every worker on SIGTERM to the primary and exits 0', async () => {
    const pids = workers()
    const exited = new Promise<number | null>((resolve) => primary.once('exit', resolve))
    primary.kill('SIGTERM')
    expect(await exited).toBe(0)
    for (const pid of pids) expect(isAlive(pid)).toBe(false)
    await expect(get('/healthz')).rejects.toThrow()
  }, 30_000)
})
