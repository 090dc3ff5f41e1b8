// GET /client/jobwire-client.js: the service hands frontends the client as one ES module.
// The test takes it the way a browser would (headers, conditional request) and then runs
// the very bytes it got: imported as a module, it watches a job on this service to its end.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import pg from 'pg'
import type * as Client from '../../src/client/index.js'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import { createJob, newTenant, startTestService, type TestService } from '../helpers/service.js'

let database: TestDatabase
let service: TestService
let dir: string

beforeAll(async () => {
  database = await createTestDatabase()
  service = await startTestService(database.url)
  dir = await mkdtemp(join(tmpdir(), 'jobwire-client-script-'))
})
afterAll(async () => {
  await service?.close()
  await database?.drop()
  if (dir) await rm(dir, { recursive: true, force: true })
})

it('serves the client as a cacheable ES module that any origin may load', async () => {
  const res = await service.fetch('/client/jobwire-client.js')
  expect(res.status).toBe(200)
  expect(res.headers.get('content-type')).toBe('text/javascript; charset=utf-8')
  expect(res.headers.get('etag')).toMatch(/^"[\w-]{20,}"$/)
  expect(res.headers.get('cache-control')).toBe('no-cache')
  // A module script from another origin is a CORS request, and helmet's default
  // Cross-Origin-Resource-Policy (same-origin) would block it.
  expect(res.headers.get('access-control-allow-origin')).toBe('*')
  expect(res.headers.get('cross-origin-resource-policy')).toBe('cross-origin')
  expect(res.headers.get('x-content-type-options')).toBe('nosniff')
  const text = await res.text()
  // (Booleans: a failure should not print 20 kB of minified code.)
  expect(/export\s*\{/.test(text)).toBe(true)
  expect(text.trimEnd().endsWith('//# sourceMappingURL=jobwire-client.js.map')).toBe(true)
  // Nothing a strict CSP forbids: no eval, no Function constructor.
  expect(/\beval\(|new Function\(/.test(text)).toBe(false)

  const map = await service.fetch('/client/jobwire-client.js.map')
  expect(map.status).toBe(200)
  expect(map.headers.get('content-type')).toBe('application/json; charset=utf-8')
  expect(((await map.json()) as { sources: string[] }).sources.join()).toContain('client/patch.ts')
})

it('answers 304 to a request that holds the current ETag', async () => {
  const first = await service.fetch('/client/jobwire-client.js')
  const etag = first.headers.get('etag')!
  await first.arrayBuffer()
  for (const ifNoneMatch of [etag, `W/${etag}`, `"other", ${etag}`, '*']) {
    const again = await service.fetch('/client/jobwire-client.js', {
      headers: { 'if-none-match': ifNoneMatch },
    })
    expect(again.status).toBe(304)
    expect(again.headers.get('etag')).toBe(etag)
    expect(await again.text()).toBe('')
  }
  const stale = await service.fetch('/client/jobwire-client.js', {
    headers: { 'if-none-match': '"stale"' },
  })
  expect(stale.status).toBe(200)
  await stale.arrayBuffer()
})

it('caches for 5 minutes in production', async () => {
  const production = await startTestService(database.url, {
    NODE_ENV: 'production',
    WATCH_TOKEN_SECRET: 'w'.repeat(40),
  })
  try {
    const res = await production.fetch('/client/jobwire-client.js')
    expect(res.status).toBe(200)
    expect(res.headers.get('cache-control')).toBe('public, max-age=300')
    await res.arrayBuffer()
  } finally {
    await production.close()
  }
})

it('is a working client on its own: imported as served, it watches a job to its end', async () => {
  const file = join(dir, 'jobwire-client.mjs')
  await writeFile(file, await (await service.fetch('/client/jobwire-client.js')).text())
  const client = (await import(pathToFileURL(file).href)) as typeof Client
  const tenant = newTenant()
  const job = await createJob(service, tenant.admin, { type: 'served-client' })

  const watch = client.watch(job.id, { baseUrl: service.url, token: tenant.admin })
  try {
    const first = await watch[Symbol.asyncIterator]().next()
    expect(first.value).toMatchObject({ id: job.id, status: 'queued' })
    const sql = new pg.Client({ connectionString: database.url })
    await sql.connect()
    try {
      await sql.query(`UPDATE job_queue SET status = 'completed', progress = 100 WHERE id = $1`, [
        job.id,
      ])
    } finally {
      await sql.end()
    }
    const final = await watch.done
    expect(final).toMatchObject({ id: job.id, status: 'completed', progress: 100 })
    expect(client.statusLabel(final!)).toBe('Completed')
  } finally {
    watch.close()
  }
})
