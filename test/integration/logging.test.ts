// The request log, captured from the real service: request ids, tenant, user, route, status
// and duration on every line, and no token anywhere — not from ?token=, not from the
// Authorization header, not in error logs.
import { randomUUID } from 'node:crypto'
import pg from 'pg'
import WebSocket from 'ws'
import { createLogger } from '../../src/telemetry/logger.js'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import { eventually } from '../helpers/metrics.js'
import {
  createJob,
  newTenant,
  startTestService,
  tokenFor,
  type TestService,
} from '../helpers/service.js'
import { openSse } from '../helpers/sse.js'

interface LogLine {
  level: number
  msg: string
  req?: { id: string; method: string; url: string; remoteAddress?: string }
  res?: { statusCode: number }
  responseTime?: number
  route?: string
  tenantId?: string
  userId?: string
  reqId?: string
  err?: unknown
}

let database: TestDatabase
let service: TestService
let sql: pg.Client
const raw: string[] = []
const lines = () => raw.map((line) => JSON.parse(line) as LogLine)
const requestLine = (id: string) =>
  eventually(async () => {
    const found = lines().find((l) => l.req?.id === id && l.res !== undefined)
    if (!found) throw new Error(`no request log line for ${id}`)
    return found
  })

beforeAll(async () => {
  database = await createTestDatabase()
  const logger = createLogger({
    level: 'info',
    pretty: false,
    destination: { write: (line: string) => void raw.push(line) },
  })
  // A short statement timeout turns a locked table into a real 500.
  service = await startTestService(database.url, { DB_STATEMENT_TIMEOUT_MS: '300' }, { logger })
  sql = new pg.Client({ connectionString: database.url })
  await sql.connect()
})
afterAll(async () => {
  await sql?.end()
  await service?.close()
  await database?.drop()
})

const t = newTenant()
const secrets: string[] = []
/** Every token used below; afterAll-independent: the last test checks them all. */
function secret(token: string): string {
  secrets.push(token)
  return token
}

it('logs a stream opened with ?token= with its route, tenant and user, and a masked URL', async () => {
  const token = secret(t.alice)
  const job = await createJob(service, token)
  const id = `sse-${randomUUID()}`
  const stream = await openSse(`${service.url}/v1/jobs/${job.id}/events?token=${token}`, {
    headers: { 'x-request-id': id },
  })
  expect(stream.status).toBe(200)
  expect(stream.headers.get('x-request-id')).toBe(id)
  await stream.next('snapshot')
  stream.close()

  const line = await requestLine(id)
  expect(line).toMatchObject({
    level: 30,
    route: '/v1/jobs/:id/events',
    tenantId: t.tenantId,
    userId: 'alice',
    res: { statusCode: 200 },
    req: { method: 'GET', url: `/v1/jobs/${job.id}/events?token=[redacted]` },
  })
  expect(line.responseTime).toEqual(expect.any(Number))
  expect(line.req?.remoteAddress).toBe('127.0.0.1')
})

it('logs a request with an Authorization header under the request id it echoes', async () => {
  const job = await createJob(service, t.admin)
  const id = `rest-${randomUUID()}`
  const res = await service.fetch(`/v1/jobs/${job.id}`, {
    token: secret(t.admin),
    headers: { 'x-request-id': id },
  })
  expect(res.status).toBe(200)
  expect(res.headers.get('x-request-id')).toBe(id)
  const line = await requestLine(id)
  expect(line).toMatchObject({
    route: '/v1/jobs/:id',
    tenantId: t.tenantId,
    userId: 'admin-1',
    res: { statusCode: 200 },
  })
})

it('replaces an unusable X-Request-Id with a generated one', async () => {
  const res = await service.fetch('/v1/jobs', {
    token: t.admin,
    headers: { 'x-request-id': 'not a usable id' },
  })
  const id = res.headers.get('x-request-id')!
  expect(id).toMatch(/^[0-9a-f-]{36}$/)
  expect(await requestLine(id)).toMatchObject({ route: '/v1/jobs', res: { statusCode: 200 } })
})

it('logs 404s and 401s without the token they carried', async () => {
  const wrongKey = secret(tokenFor({ tenantId: t.tenantId }, {}, 'x'.repeat(48)))
  const notFound = await service.fetch(`/no-such-page?token=${secret(t.bob)}`)
  expect(notFound.status).toBe(404)
  expect(await requestLine(notFound.headers.get('x-request-id')!)).toMatchObject({
    res: { statusCode: 404 },
    req: { url: '/no-such-page?token=[redacted]' },
  })
  const badSignature = await service.fetch('/v1/jobs', { token: wrongKey })
  expect(badSignature.status).toBe(401)
  const badQuery = await service.fetch(`/v1/jobs/${randomUUID()}/events?token=${wrongKey}`)
  expect(badQuery.status).toBe(401)
  const line = await requestLine(badQuery.headers.get('x-request-id')!)
  expect(line.res?.statusCode).toBe(401)
  expect(line.tenantId).toBeUndefined()
})

it('logs a database failure with its error and request id, and without the ?token=', async () => {
  const job = await createJob(service, t.admin)
  const locker = new pg.Client({ connectionString: database.url })
  await locker.connect()
  try {
    await locker.query('BEGIN')
    await locker.query('LOCK TABLE job_queue IN ACCESS EXCLUSIVE MODE')
    const id = `err-${randomUUID()}`
    const res = await service.fetch(`/v1/jobs/${job.id}/events?token=${secret(t.admin)}`, {
      headers: { 'x-request-id': id },
    })
    // The statement timeout (57014) is a 503: the database cannot answer now.
    expect(res.status).toBe(503)
    const line = await requestLine(id)
    expect(line).toMatchObject({
      level: 50,
      route: '/v1/jobs/:id/events',
      req: { url: `/v1/jobs/${job.id}/events?token=[redacted]` },
    })
    const cause = lines().find((l) => l.msg === 'Service unavailable' && l.reqId === id)
    expect(cause).toMatchObject({ level: 40, err: { code: '57014' } })
  } finally {
    await locker.query('ROLLBACK')
    await locker.end()
  }
})

it('masks a token used as a job id in the path, percent-encoded or not', async () => {
  // Someone pastes a token where the job id goes; express decodes %2E to a dot.
  const token = secret(tokenFor({ tenantId: t.tenantId, sub: 'carol', role: 'member' }))
  const paths = [
    `/v1/jobs/${token.replaceAll('.', '%2E')}`,
    `/v1/jobs/${token.replaceAll('.', '%2e')}/events`,
    `/v1/jobs/${token}/wait?timeout=0`,
  ]
  for (const path of paths) {
    const res = await service.fetch(path, { token: t.admin })
    expect(res.status).toBe(400)
    const line = await requestLine(res.headers.get('x-request-id')!)
    expect(line.req?.url).toMatch(/^\/v1\/jobs\/\[redacted\](\/events|\/wait\?timeout=0)?$/)
  }
})

it('keeps WebSocket tokens out of the log', async () => {
  const token = secret(t.admin)
  const ws = new WebSocket(`${service.url.replace('http', 'ws')}/v1/ws?token=${token}`)
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve())
    ws.once('error', reject)
  })
  ws.close()
  const refused = new WebSocket(`${service.url.replace('http', 'ws')}/v1/ws?token=${token}x`)
  await new Promise<void>((resolve) => {
    refused.once('error', () => resolve())
    refused.once('close', () => resolve())
  })
})

it('never writes a token, or its signature, to any log line', () => {
  expect(raw.length).toBeGreaterThan(5)
  const text = raw.join('')
  for (const token of secrets) {
    expect(text).not.toContain(token)
    expect(text).not.toContain(token.split('.')[2])
  }
})
