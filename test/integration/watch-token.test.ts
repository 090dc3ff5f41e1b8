// Share-link watch tokens (docs/contract.md §3): `POST /v1/jobs` returns a signed, expiring,
// read-only token scoped to that one job. It opens that job on every transport and nothing else.
import jwt from 'jsonwebtoken'
import pg from 'pg'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import { createJob, newTenant, startTestService, type TestService } from '../helpers/service.js'
import { openSse, type SseClient } from '../helpers/sse.js'
import { openWs, refusedUpgrade, until, type WsClient } from '../helpers/ws.js'

const WATCH_TOKEN_SECRET = 'watch-secret-for-tests-0123456789abcdef'
const TTL_SECONDS = 3600

let database: TestDatabase
let service: TestService
let sql: pg.Client
const closers: Array<() => void> = []

beforeAll(async () => {
  database = await createTestDatabase()
  service = await startTestService(database.url, {
    WATCH_TOKEN_SECRET,
    WATCH_TOKEN_TTL_SECONDS: String(TTL_SECONDS),
  })
  sql = new pg.Client({ connectionString: database.url })
  await sql.connect()
})
afterEach(async () => {
  for (const close of closers.splice(0)) close()
  await until(() => service.registry.size === 0, 'every stream to close')
})
afterAll(async () => {
  await sql?.end()
  await service?.close()
  await database?.drop()
})

function wsUrl(path: string, token: string): string {
  return `${service.url.replace(/^http/, 'ws')}${path}?token=${encodeURIComponent(token)}`
}

async function sse(path: string): Promise<SseClient> {
  const stream = await openSse(service.url + path)
  closers.push(() => stream.close())
  return stream
}

async function ws(path: string, token: string): Promise<WsClient> {
  const client = await openWs(wsUrl(path, token))
  closers.push(() => client.socket.terminate())
  return client
}

/** Signs a watch token the way src/http/auth.ts issueWatchToken does. */
function signWatchToken(
  claims: { tid: string; job: string; sub: string; exp: number },
  secret = WATCH_TOKEN_SECRET,
): string {
  const { sub, ...rest } = claims
  return jwt.sign(rest, secret, {
    algorithm: 'HS256',
    subject: sub,
    audience: 'jobwire:watch',
    keyid: 'jobwire-watch',
  })
}

async function setup() {
  const t = newTenant()
  const job = await createJob(service, t.alice)
  const other = await createJob(service, t.alice)
  return { t, job, other, token: job.watch_token as string }
}

it('is returned by POST /v1/jobs: HS256, scoped to the job and tenant, expiring', async () => {
  const { t, job, token } = await setup()
  expect(typeof token).toBe('string')
  const decoded = jwt.verify(token, WATCH_TOKEN_SECRET, {
    algorithms: ['HS256'],
    audience: 'jobwire:watch',
    complete: true,
  })
  expect(decoded.header).toMatchObject({ alg: 'HS256', kid: 'jobwire-watch' })
  const payload = decoded.payload as jwt.JwtPayload
  expect(payload).toMatchObject({ tid: t.tenantId, job: job.id, sub: 'alice' })
  expect(payload.exp! - payload.iat!).toBe(TTL_SECONDS)
})

it('opens its job on GET /v1/jobs/:id, /events, ?stream=true and /wait', async () => {
  const { t, job, token } = await setup()
  const read = await service.fetch(`/v1/jobs/${job.id}`, { token })
  expect(read.status).toBe(200)
  const doc = await read.json()
  const asOwner = await service.fetch(`/v1/jobs/${job.id}`, { token: t.alice })
  expect(doc).toEqual(await asOwner.json())

  const events = await sse(`/v1/jobs/${job.id}/events?token=${token}`)
  expect(events.status).toBe(200)
  expect((await events.next('snapshot')).json()).toEqual(doc)
  const streamed = await sse(`/v1/jobs/${job.id}?stream=true&token=${token}`)
  expect((await streamed.next('snapshot')).json()).toEqual(doc)

  const wait = await fetch(`${service.url}/v1/jobs/${job.id}/wait?timeout=0&token=${token}`)
  expect(wait.status).toBe(200)
  expect(await wait.json()).toEqual(doc)

  await sql.query(`UPDATE job_queue SET status = 'running', progress = 30 WHERE id = $1`, [job.id])
  await events.next('patch')
  await streamed.next('patch')
})

it('opens its job over WebSocket, and neither another job nor the feed', async () => {
  const { t, job, other, token } = await setup()
  const socket = await ws('/v1/ws', token)
  socket.send({ op: 'subscribe', jobs: [other.id] })
  expect(await socket.next('error')).toMatchObject({ job: other.id, status: 403 })
  socket.send({ op: 'subscribe', feed: 'tenant' })
  expect(await socket.next('error')).toMatchObject({ status: 403 })
  socket.send({ op: 'subscribe', jobs: [job.id] })
  expect(await socket.nextFor(job.id, 'snapshot')).toMatchObject({ version: 1 })
  // The refused feed really is closed: a new job of the tenant does not arrive.
  const newer = await createJob(service, t.alice)
  await sql.query(`UPDATE job_queue SET progress = 10 WHERE id = $1`, [job.id])
  await socket.nextFor(job.id, 'patch')
  expect(socket.messages.some((m) => m.job === newer.id)).toBe(false)

  const single = await ws(`/v1/jobs/${job.id}`, token)
  expect(await single.nextFor(job.id, 'snapshot')).toMatchObject({ version: 2 })
  const wrong = await ws(`/v1/jobs/${other.id}`, token)
  expect(await wrong.next('error')).toMatchObject({ job: other.id, status: 403 })
  await wrong.closed
})

it('cannot list, create, cancel, open another job or open the feed (403)', async () => {
  const { job, other, token } = await setup()
  const foreign = await createJob(service, newTenant().admin)
  const refused: Array<[string, Promise<Response>]> = [
    ['list', service.fetch('/v1/jobs', { token })],
    [
      'create',
      service.fetch('/v1/jobs', {
        token,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ type: 'x' }),
      }),
    ],
    ['cancel its job', service.fetch(`/v1/jobs/${job.id}/cancel`, { token, method: 'POST' })],
    ['read another job', service.fetch(`/v1/jobs/${other.id}`, { token })],
    ["read another tenant's job", service.fetch(`/v1/jobs/${foreign.id}`, { token })],
    ['stream another job', fetch(`${service.url}/v1/jobs/${other.id}/events?token=${token}`)],
    ['wait on another job', fetch(`${service.url}/v1/jobs/${other.id}/wait?token=${token}`)],
    ['open the feed', fetch(`${service.url}/v1/events?token=${token}`)],
    ['multiplex another job', fetch(`${service.url}/v1/events?jobs=${other.id}&token=${token}`)],
  ]
  for (const [what, pending] of refused) {
    const res = await pending
    expect({ what, status: res.status }).toEqual({ what, status: 403 })
    expect(res.headers.get('content-type')).toBe('application/problem+json')
  }
  // The cancel was refused: the job is still queued.
  const read = await service.fetch(`/v1/jobs/${job.id}`, { token })
  expect(await read.json()).toMatchObject({ status: 'queued', version: 1 })
  expect(service.registry.size).toBe(0)
})

it('is refused with 401 once expired, or when signed with another key', async () => {
  const { t, job } = await setup()
  const now = Math.floor(Date.now() / 1000)
  const claims = { tid: t.tenantId, job: job.id, sub: 'alice' }
  // The same claims, still valid: proves the crafted token has the issued token's shape.
  const valid = signWatchToken({ ...claims, exp: now + 60 })
  expect((await service.fetch(`/v1/jobs/${job.id}`, { token: valid })).status).toBe(200)

  const expired = signWatchToken({ ...claims, exp: now - 60 })
  const forged = signWatchToken(
    { ...claims, exp: now + 60 },
    'not-the-watch-secret-0123456789abcdef',
  )
  for (const token of [expired, forged]) {
    const read = await service.fetch(`/v1/jobs/${job.id}`, { token })
    expect(read.status).toBe(401)
    expect(read.headers.get('content-type')).toBe('application/problem+json')
    const stream = await fetch(`${service.url}/v1/jobs/${job.id}/events?token=${token}`)
    expect(stream.status).toBe(401)
    const wait = await fetch(`${service.url}/v1/jobs/${job.id}/wait?timeout=0&token=${token}`)
    expect(wait.status).toBe(401)
    const mux = await fetch(`${service.url}/v1/events?jobs=${job.id}&token=${token}`)
    expect(mux.status).toBe(401)
    expect((await refusedUpgrade(wsUrl('/v1/ws', token))).status).toBe(401)
    expect((await refusedUpgrade(wsUrl(`/v1/jobs/${job.id}`, token))).status).toBe(401)
  }
  expect(
    (await service.fetch(`/v1/jobs/${job.id}`, { token: expired }).then((r) => r.json())) as object,
  ).toMatchObject({
    detail: expect.stringMatching(/expired/i),
  })
})
