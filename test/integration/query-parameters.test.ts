// Every route agrees on query parameters (docs/api.md, "Query parameters"): one it does not know
// is a 400 naming it, before anything else happens; `_`, the cache-buster EventSource polyfills
// add, is accepted and ignored everywhere.
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import { createJob, newTenant, startTestService, type TestService } from '../helpers/service.js'
import { openSse } from '../helpers/sse.js'

let database: TestDatabase
let service: TestService

beforeAll(async () => {
  database = await createTestDatabase()
  service = await startTestService(database.url)
})
afterAll(async () => {
  await service?.close()
  await database?.drop()
})

it('answers an unknown parameter with 400 on every route, streams included', async () => {
  const t = newTenant()
  const job = await createJob(service, t.admin)
  const routes: Array<[string, string]> = [
    ['GET', `/v1/jobs/${job.id}`],
    ['GET', `/v1/jobs/${job.id}/events`],
    ['GET', `/v1/jobs/${job.id}?stream=true`],
    ['GET', `/v1/jobs/${job.id}/wait`],
    ['GET', `/v1/events?jobs=${job.id}`],
    ['GET', '/v1/events'],
    ['GET', '/v1/jobs'],
    ['POST', '/v1/jobs'],
    ['POST', `/v1/jobs/${job.id}/cancel`],
  ]
  for (const [method, path] of routes) {
    const res = await service.fetch(`${path}${path.includes('?') ? '&' : '?'}foo=1`, {
      method,
      token: t.admin,
      headers: { 'content-type': 'application/json' },
      ...(method === 'POST' ? { body: '{"type":"q.test"}' } : {}),
    })
    const problem = (await res.json()) as { detail?: string }
    expect({ method, path, status: res.status, detail: problem.detail }).toEqual({
      method,
      path,
      status: 400,
      detail: 'query: unknown parameter(s): foo',
    })
  }
})

it('accepts `_` everywhere and ignores it', async () => {
  const t = newTenant()
  const job = await createJob(service, t.admin)
  const doc = await service.fetch(`/v1/jobs/${job.id}?_=1`, { token: t.admin })
  expect(doc.status).toBe(200)
  const list = await service.fetch('/v1/jobs?_=1&_=2', { token: t.admin })
  expect(list.status).toBe(200)
  const created = await service.fetch('/v1/jobs?_=1', {
    method: 'POST',
    token: t.admin,
    headers: { 'content-type': 'application/json' },
    body: '{"type":"q.test"}',
  })
  expect(created.status).toBe(201)
  const waited = await service.fetch(`/v1/jobs/${job.id}/wait?since=0&_=1`, { token: t.admin })
  expect(waited.status).toBe(200)
  const stream = await openSse(`${service.url}/v1/jobs/${job.id}/events?_=1&token=${t.admin}`)
  try {
    expect(stream.status).toBe(200)
    await stream.next('snapshot')
  } finally {
    stream.close()
  }
})
