// A frontend on another origin, in a real browser (Debian's Chromium driven by playwright-core, as
// in live-page.test.ts): a page served by a tiny node:http server on its own port talks to the
// service on another port. From an origin CORS_ORIGINS lists it creates a job with fetch,
// polls it, opens an EventSource with ?token= and reads a patch, long-polls and opens a
// WebSocket; the same page from an unlisted origin is blocked. A multiplexed EventSource
// that lists another tenant's job gets `unavailable`, and onerror stays silent.
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import type { BrowserContext, Page } from 'playwright-core'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import { requiresTool } from '../helpers/requires.js'
import { createJob, newTenant, startTestService, type TestService } from '../helpers/service.js'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const { it: itInBrowser } = requiresTool(
  'Chromium',
  existsSync(CHROMIUM) ? undefined : `no Chromium at ${CHROMIUM} (apt-get install -y chromium)`,
  import.meta.url,
)

let database: TestDatabase
let service: TestService
let sql: pg.Client
let listed: { server: Server; url: string }
let unlisted: { server: Server; url: string }
let context: BrowserContext
let userDataDir: string

/** A blank page on its own origin; the test drives it with page.evaluate(). */
async function pageServer(): Promise<{ server: Server; url: string }> {
  const server = createServer((_req, res) => {
    res
      .writeHead(200, { 'content-type': 'text/html' })
      .end('<!doctype html><title>frontend</title>')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { server, url: `http://127.0.0.1:${(server.address() as { port: number }).port}` }
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) return
  listed = await pageServer()
  unlisted = await pageServer()
  database = await createTestDatabase()
  service = await startTestService(database.url, { CORS_ORIGINS: listed.url })
  sql = new pg.Client({ connectionString: database.url })
  await sql.connect()
  userDataDir = await mkdtemp(join(tmpdir(), 'jobwire-chromium-'))
  const { chromium } = await import('playwright-core')
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-quic'],
  })
}, 60_000)

afterAll(async () => {
  await context?.close()
  if (userDataDir) await rm(userDataDir, { recursive: true, force: true })
  for (const s of [listed, unlisted]) s?.server.closeAllConnections()
  for (const s of [listed, unlisted]) if (s) await new Promise((r) => s.server.close(r))
  await sql?.end()
  await service?.close()
  await database?.drop()
}, 30_000)

async function openOn(origin: string): Promise<Page> {
  const page = await context.newPage()
  await page.goto(`${origin}/`)
  return page
}

interface Created {
  id: string
  version: number
  status: number
  location: string | null
  requestId: string | null
  remaining: string | null
}

/** In the page: create a job with fetch (a preflighted request). */
const createInPage = (page: Page, token: string) =>
  page.evaluate(
    async ([api, token]) => {
      const res = await fetch(`${api}/v1/jobs`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${token}`,
          'content-type': 'application/json',
          'idempotency-key': crypto.randomUUID(),
        },
        body: JSON.stringify({ type: 'browser.test' }),
      })
      const doc = (await res.json()) as { id: string; version: number }
      return {
        id: doc.id,
        version: doc.version,
        status: res.status,
        location: res.headers.get('location'),
        requestId: res.headers.get('x-request-id'),
        remaining: res.headers.get('ratelimit-remaining'),
      }
    },
    [service.url, token] as const,
  ) as Promise<Created>

itInBrowser(
  'a listed origin creates, polls, streams, long-polls and opens a WebSocket',
  async () => {
    const t = newTenant()
    const page = await openOn(listed.url)
    const created = await createInPage(page, t.admin)
    expect(created).toMatchObject({ status: 201, location: `/v1/jobs/${created.id}` })
    expect(created.requestId).toMatch(/\S/)
    expect(Number(created.remaining)).toBeGreaterThan(0)

    const polled = await page.evaluate(
      async ([api, token, id]) => {
        const res = await fetch(`${api}/v1/jobs/${id}`, {
          headers: { authorization: `Bearer ${token}` },
        })
        const again = await fetch(`${api}/v1/jobs/${id}`, {
          headers: { authorization: `Bearer ${token}`, 'if-none-match': res.headers.get('etag')! },
        })
        return { status: res.status, etag: res.headers.get('etag'), again: again.status }
      },
      [service.url, t.admin, created.id] as const,
    )
    expect(polled).toEqual({ status: 200, etag: `"${created.version}"`, again: 304 })

    // EventSource with ?token=: a snapshot, then the patch of a change made now.
    await page.evaluate(
      ([api, token, id]) => {
        const w = window as unknown as { got: string[] }
        w.got = []
        const source = new EventSource(`${api}/v1/jobs/${id}/events?token=${token}`)
        for (const name of ['snapshot', 'patch'])
          source.addEventListener(name, () => w.got.push(name))
      },
      [service.url, t.admin, created.id] as const,
    )
    await page.waitForFunction(() =>
      (window as unknown as { got: string[] }).got.includes('snapshot'),
    )
    await sql.query(`UPDATE job_queue SET progress = 42 WHERE id = $1`, [created.id])
    await page.waitForFunction(() => (window as unknown as { got: string[] }).got.includes('patch'))

    const waited = await page.evaluate(
      async ([api, token, id]) => {
        const res = await fetch(`${api}/v1/jobs/${id}/wait?since=0&timeout=5`, {
          headers: { authorization: `Bearer ${token}` },
        })
        const doc = (await res.json()) as { progress: number }
        return {
          status: res.status,
          progress: doc.progress,
          timedOut: res.headers.get('jobwire-timed-out'),
        }
      },
      [service.url, t.admin, created.id] as const,
    )
    expect(waited).toEqual({ status: 200, progress: 42, timedOut: 'false' })

    const ws = await page.evaluate(
      ([api, token, id]) =>
        new Promise<string>((resolve) => {
          const socket = new WebSocket(`${api.replace(/^http/, 'ws')}/v1/ws?token=${token}`)
          socket.onopen = () => socket.send(JSON.stringify({ op: 'subscribe', jobs: [id] }))
          socket.onmessage = (m) => resolve((JSON.parse(String(m.data)) as { type: string }).type)
          socket.onclose = (e) => resolve(`closed ${e.code}`)
        }),
      [service.url, t.admin, created.id] as const,
    )
    expect(ws).toBe('snapshot')
    await page.close()
  },
)

itInBrowser('the same page from an unlisted origin is blocked everywhere', async () => {
  const t = newTenant()
  const job = await createJob(service, t.admin)
  const page = await openOn(unlisted.url)
  const outcome = await page.evaluate(
    async ([api, token, id]) => {
      const blocked = (p: Promise<unknown>) =>
        p.then(
          () => 'read',
          () => 'blocked',
        )
      const create = await blocked(
        fetch(`${api}/v1/jobs`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: '{"type":"browser.test"}',
        }),
      )
      // A simple request (no preflight): it reaches the service, the answer is not readable.
      const poll = await blocked(fetch(`${api}/v1/jobs/${id}/wait?since=0&token=${token}`))
      const events = await new Promise<string>((resolve) => {
        const source = new EventSource(`${api}/v1/jobs/${id}/events?token=${token}`)
        source.addEventListener('snapshot', () => resolve('read'))
        source.onerror = () => {
          source.close()
          resolve('blocked')
        }
      })
      const ws = await new Promise<string>((resolve) => {
        const socket = new WebSocket(`${api.replace(/^http/, 'ws')}/v1/ws?token=${token}`)
        socket.onopen = () => resolve('read')
        socket.onerror = () => resolve('blocked')
      })
      return { create, poll, events, ws }
    },
    [service.url, t.admin, job.id] as const,
  )
  expect(outcome).toEqual({ create: 'blocked', poll: 'blocked', events: 'blocked', ws: 'blocked' })
  // Nothing was created: the preflight stopped the POST.
  const count = await sql.query(`SELECT count(*)::int AS n FROM job_queue WHERE tenant_id = $1`, [
    t.tenantId,
  ])
  expect(count.rows[0].n).toBe(1)
  await page.close()
})

itInBrowser('an unwatchable job on /v1/events is `unavailable`, not onerror', async () => {
  const t = newTenant()
  const other = newTenant()
  const own = await createJob(service, t.admin)
  const foreign = await createJob(service, other.admin)
  const page = await openOn(listed.url)
  const seen = await page.evaluate(
    ([api, token, jobs]) =>
      new Promise<{ unavailable: unknown; errors: number }>((resolve) => {
        const source = new EventSource(`${api}/v1/events?jobs=${jobs}&token=${token}`)
        let unavailable: unknown
        let errors = 0
        source.onerror = () => errors++
        source.addEventListener('unavailable', (e) => (unavailable = JSON.parse(e.data)))
        // The server writes `unavailable` before any snapshot: by the snapshot, both are known.
        source.addEventListener('snapshot', () => {
          source.close()
          resolve({ unavailable, errors })
        })
      }),
    [service.url, t.admin, `${own.id},${foreign.id}`] as const,
  )
  expect(seen).toEqual({
    errors: 0,
    unavailable: {
      type: 'unavailable',
      status: 404,
      detail: 'Some jobs cannot be watched.',
      jobs: [{ job: foreign.id, status: 404, detail: `No job ${foreign.id} is visible to you.` }],
    },
  })
  await page.close()
})
