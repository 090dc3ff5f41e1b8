// CORS from CORS_ORIGINS (docs/production.md, "CORS") on every route, the edge's hot routes and
// express's alike: preflights answered without a token, Access-Control-Allow-Origin echoing a
// listed origin on every answer (streams and problems included), nothing for other origins,
// and WebSocket upgrades checked against the same list.
import { randomUUID } from 'node:crypto'
import { request as httpRequest } from 'node:http'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import { createJob, newTenant, startTestService, type TestService } from '../helpers/service.js'
import { openSse } from '../helpers/sse.js'
import { openWs, refusedUpgrade } from '../helpers/ws.js'

const APP = 'https://app.example'
const OTHER = 'https://evil.example'
const EXPOSED = [
  'etag',
  'location',
  'retry-after',
  'jobwire-timed-out',
  'idempotent-replayed',
  'RateLimit-Policy',
  'RateLimit-Limit',
  'RateLimit-Remaining',
  'RateLimit-Reset',
  'x-request-id',
  'date',
]

let database: TestDatabase
let service: TestService

beforeAll(async () => {
  database = await createTestDatabase()
  service = await startTestService(database.url, {
    CORS_ORIGINS: `${APP}, http://localhost:5173`,
    RATE_LIMIT_PER_WATCH_JOB: '2',
    COMPAT_ROUTES: 'all',
  })
})
afterAll(async () => {
  await service?.close()
  await database?.drop()
})

function get(path: string, headers: Record<string, string>): Promise<Response> {
  return fetch(`${service.url}${path}`, { headers })
}

function expectAllowed(res: { headers: Headers }, origin = APP): void {
  expect(res.headers.get('access-control-allow-origin')).toBe(origin)
  expect(res.headers.get('access-control-expose-headers')?.split(', ')).toEqual(EXPOSED)
  expect(res.headers.get('vary')).toMatch(/\bOrigin\b/)
  expect(res.headers.get('access-control-allow-credentials')).toBeNull()
}

/** A preflight as a browser sends it (fetch cannot send OPTIONS with these headers). */
function preflight(
  path: string,
  origin: string,
  method: string,
  requestHeaders: string,
): Promise<{ status: number; headers: Record<string, string | string[] | undefined> }> {
  const url = new URL(path, service.url)
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, {
      method: 'OPTIONS',
      headers: {
        origin,
        'access-control-request-method': method,
        'access-control-request-headers': requestHeaders,
      },
    })
    req.on('response', (res) => {
      res.resume()
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers }))
    })
    req.on('error', reject)
    req.end()
  })
}

describe('preflight', () => {
  it('is answered on every route without a token, for a listed origin', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    const paths = [
      ['/v1/jobs', 'POST', 'authorization, content-type, idempotency-key'],
      [`/v1/jobs/${job.id}`, 'GET', 'authorization, if-none-match'],
      [`/v1/jobs/${job.id}/events`, 'GET', 'authorization, last-event-id'],
      [`/v1/jobs/${job.id}/wait`, 'GET', 'authorization'],
      [`/v1/jobs/${job.id}/cancel`, 'POST', 'authorization'],
      ['/v1/events?jobs=x', 'GET', 'authorization, last-event-id'],
      ['/v1/nowhere', 'GET', 'authorization'],
    ] as const
    for (const [path, method, requested] of paths) {
      const res = await preflight(path, APP, method, requested)
      expect({ path, status: res.status }).toEqual({ path, status: 204 })
      expect(res.headers['access-control-allow-origin']).toBe(APP)
      expect(String(res.headers['access-control-allow-methods']).split(', ')).toEqual(
        expect.arrayContaining(['GET', 'HEAD', 'POST']),
      )
      expect(String(res.headers['access-control-allow-headers']).split(', ')).toEqual([
        'authorization',
        'content-type',
        'idempotency-key',
        'if-none-match',
        'last-event-id',
      ])
      expect(Number(res.headers['access-control-max-age'])).toBeGreaterThan(0)
      expect(res.headers['access-control-allow-credentials']).toBeUndefined()
      expect(res.headers.vary).toBe('Origin')
      // No admission: nothing was counted against any limit.
      expect(res.headers['ratelimit-remaining']).toBeUndefined()
    }
  })

  it('says nothing to an origin that is not listed', async () => {
    const res = await preflight('/v1/jobs', OTHER, 'POST', 'authorization, content-type')
    expect(res.status).toBe(204)
    expect(res.headers['access-control-allow-origin']).toBeUndefined()
    expect(res.headers['access-control-allow-methods']).toBeUndefined()
    expect(res.headers['access-control-allow-headers']).toBeUndefined()
  })
})

describe('responses to a listed origin', () => {
  it('a create, a GET, a 304, a list and a cancel, each readable with its headers exposed', async () => {
    const t = newTenant()
    const auth = { authorization: `Bearer ${t.admin}`, origin: APP }
    const created = await fetch(`${service.url}/v1/jobs`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json', 'idempotency-key': 'cors-1' },
      body: JSON.stringify({ type: 'cors.test' }),
    })
    expect(created.status).toBe(201)
    expectAllowed(created)
    const job = (await created.json()) as { id: string }
    const doc = await get(`/v1/jobs/${job.id}`, auth)
    expect(doc.status).toBe(200)
    expectAllowed(doc)
    const notModified = await get(`/v1/jobs/${job.id}`, {
      ...auth,
      'if-none-match': doc.headers.get('etag')!,
    })
    expect(notModified.status).toBe(304)
    expectAllowed(notModified)
    expectAllowed(await get('/v1/jobs', auth))
    const cancelled = await fetch(`${service.url}/v1/jobs/${job.id}/cancel`, {
      method: 'POST',
      headers: auth,
    })
    expect(cancelled.status).toBe(200)
    expectAllowed(cancelled)
    expectAllowed(
      await get('/healthz', { origin: 'http://localhost:5173' }),
      'http://localhost:5173',
    )
  })

  it('SSE on one job, /v1/events and a long-poll', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    for (const path of [
      `/v1/jobs/${job.id}/events?token=${t.admin}`,
      `/v1/events?jobs=${job.id}&token=${t.admin}`,
      `/v1/events?token=${t.admin}`,
    ]) {
      const stream = await openSse(`${service.url}${path}`, { headers: { origin: APP } })
      try {
        expect(stream.status).toBe(200)
        expectAllowed(stream)
      } finally {
        stream.close()
      }
    }
    const waited = await get(`/v1/jobs/${job.id}/wait?since=${job.version}&timeout=0`, {
      authorization: `Bearer ${t.admin}`,
      origin: APP,
    })
    expect(waited.status).toBe(200)
    expect(waited.headers.get('jobwire-timed-out')).toBe('true')
    expectAllowed(waited)
  })

  it('problems: 400, 401, 404 and 429', async () => {
    const t = newTenant()
    const other = newTenant()
    const job = await createJob(service, t.admin)
    const link = job.watch_token as string
    const answers = {
      400: await get('/v1/jobs?limit=0', { authorization: `Bearer ${t.admin}`, origin: APP }),
      401: await get(`/v1/jobs/${job.id}/events`, { origin: APP }),
      404: await get(`/v1/jobs/${job.id}`, { authorization: `Bearer ${other.admin}`, origin: APP }),
    }
    for (const [status, res] of Object.entries(answers)) {
      expect(res.status).toBe(Number(status))
      expect(res.headers.get('content-type')).toBe('application/problem+json')
      expectAllowed(res)
    }
    let limited: Response | undefined
    for (let i = 0; i < 5 && !limited; i++) {
      const res = await get(`/v1/jobs/${job.id}`, { authorization: `Bearer ${link}`, origin: APP })
      if (res.status === 429) limited = res
    }
    expect(limited?.headers.get('retry-after')).toMatch(/^\d+$/)
    expectAllowed(limited!)
  })
})

describe('compatibility routes (docs/compat.md)', () => {
  it('answer a listed origin as v1 does: polls, streams and problems', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    const auth = { authorization: `Bearer ${t.admin}`, origin: APP }
    for (const path of [
      `/jobs/${job.id}`,
      `/api/jobs/${job.id}`,
      `/api/queue/poll/${job.id}`,
      `/api/v1/jobs/${job.id}/status`,
    ]) {
      const res = await get(path, auth)
      expect({ path, status: res.status }).toEqual({ path, status: 200 })
      expectAllowed(res)
    }
    const stream = await openSse(`${service.url}/api/v1/jobs/${job.id}/stream?token=${t.admin}`, {
      headers: { origin: APP },
    })
    try {
      expect(stream.status).toBe(200)
      expect(stream.headers.get('access-control-allow-origin')).toBe(APP)
    } finally {
      stream.close()
    }
    const missing = await get(`/api/jobs/${randomUUID()}`, auth)
    expect(missing.status).toBe(404)
    expectAllowed(missing)
  })
})

describe('other origins and no origin', () => {
  it('an unlisted origin gets no CORS header; no Origin gets only Vary', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    for (const headers of [{ origin: OTHER }, {}] as Array<Record<string, string>>) {
      for (const path of [`/v1/jobs/${job.id}`, '/v1/jobs']) {
        const res = await get(path, { authorization: `Bearer ${t.admin}`, ...headers })
        expect(res.status).toBe(200)
        expect(res.headers.get('access-control-allow-origin')).toBeNull()
        expect(res.headers.get('access-control-expose-headers')).toBeNull()
        expect(res.headers.get('vary')).toBe('Origin')
      }
    }
  })
})

describe('WebSocket upgrades', () => {
  const wsUrl = (path: string) => `${service.url.replace(/^http/, 'ws')}${path}`

  it('open from a listed origin, from the service itself and without an Origin', async () => {
    const t = newTenant()
    for (const origin of [APP, service.url, undefined]) {
      const ws = await openWs(wsUrl(`/v1/ws?token=${t.admin}`), origin ? { origin } : {})
      ws.socket.terminate()
    }
  })

  it('from an unlisted origin: 403 problem before the handshake', async () => {
    const t = newTenant()
    const refused = await refusedUpgrade(wsUrl(`/v1/ws?token=${t.admin}`), { origin: OTHER })
    expect(refused.status).toBe(403)
    expect(refused.headers['content-type']).toBe('application/problem+json')
    expect(JSON.parse(refused.body)).toMatchObject({ status: 403 })
    expect(refused.body).toContain('CORS_ORIGINS')
    expect(refused.headers['access-control-allow-origin']).toBeUndefined()
  })

  it('rejects an unknown query parameter with 400, as every route does, and ignores `_`', async () => {
    const t = newTenant()
    const refused = await refusedUpgrade(wsUrl(`/v1/ws?token=${t.admin}&tokn=x`))
    expect(refused.status).toBe(400)
    expect(JSON.parse(refused.body)).toMatchObject({ detail: 'query: unknown parameter(s): tokn' })
    const ws = await openWs(wsUrl(`/v1/ws?token=${t.admin}&_=1`))
    ws.socket.terminate()
  })

  it('a refused upgrade from a listed origin is readable: it carries the CORS headers', async () => {
    const refused = await refusedUpgrade(wsUrl('/v1/ws'), { origin: APP })
    expect(refused.status).toBe(401)
    expect(refused.headers['access-control-allow-origin']).toBe(APP)
  })
})
