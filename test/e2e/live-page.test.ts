// The live page in a real browser (docs/contract.md §13): Debian's Chromium driven by playwright-core
// (never a downloaded browser). The page is served by livePageRouter behind helmet's CSP, in
// front of a real service and the demo worker; the front server also proxies /v1, through a
// TCP proxy, so a test can cut the page's event stream like a network would, or take the
// service away for as long as it likes. Where no Chromium is installed the tests are
// skipped, with the reason on the console.
import { existsSync, mkdirSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, request as httpRequest, type Server, type ServerResponse } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import express from 'express'
import helmet from 'helmet'
import pg from 'pg'
import type { BrowserContext, ConsoleMessage, Page } from 'playwright-core'
import { startDemoWorker, type DemoWorker } from '../../src/dev/demo-worker.js'
import { livePageRouter } from '../../src/dev/live-page.js'
import { PROJECT_ROOT } from '../../src/project-root.js'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import { requiresTool } from '../helpers/requires.js'
import { newTenant, startTestService, type TestService } from '../helpers/service.js'
import { startTcpProxy, targetOf, type TcpProxy } from '../helpers/tcp-proxy.js'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const hasChromium = existsSync(CHROMIUM)
const { it: itInBrowser } = requiresTool(
  'Chromium',
  hasChromium
    ? undefined
    : `no Chromium at ${CHROMIUM} (apt-get install -y chromium, or set CHROMIUM_PATH)`,
  import.meta.url,
)

const OUTPUT_DIR = join(PROJECT_ROOT, 'test-output')
const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
]

let database: TestDatabase
let service: TestService
let worker: DemoWorker
let sql: pg.Client
let front: FrontServer
/** Between the front server's /v1 proxy and the service: pause() is an outage. */
let outage: TcpProxy
let context: BrowserContext
let userDataDir: string
let tenant: ReturnType<typeof newTenant>

/** The page and a /v1 proxy to the service, which can cut the open event streams. */
interface FrontServer {
  url: string
  /** Event-stream requests so far, with the Last-Event-ID each carried. */
  streams: Array<{ url: string; lastEventId: string | undefined }>
  cutStreams(): number
  close(): Promise<void>
}

async function startFrontServer(
  serviceUrl: string,
  apiUrl: string,
  devToken: string,
): Promise<FrontServer> {
  const service = new URL(serviceUrl)
  const upstream = new URL(apiUrl)
  const open = new Set<ServerResponse>()
  const streams: FrontServer['streams'] = []
  const app = express()
  // A page on this (other) origin that imports the client straight from the service, as a
  // frontend without a bundler does; its CSP allows scripts from itself and the service only.
  app.get('/module-check/', (_req, res) => {
    res
      .set('content-security-policy', `default-src 'self'; script-src 'self' ${service.origin}`)
      .type('html')
      .send(
        '<!doctype html><title>module check</title><script type="module" src="check.js"></script>',
      )
  })
  app.get('/favicon.ico', (_req, res) => void res.status(204).end())
  app.get('/module-check/check.js', (_req, res) => {
    res.type('text/javascript').send(
      `import { applyPatch, statusLabel } from '${service.origin}/client/jobwire-client.js'
       const doc = applyPatch({ status: 'queued', attempts: 0 }, [
         { op: 'replace', path: '/status', value: 'running' },
         { op: 'copy', from: '/status', path: '/was' },
       ])
       document.body.dataset.label = statusLabel(doc) + ' ' + doc.was`,
    )
  })
  // The same policy as src/http/app.ts: no inline script, connections to this origin only.
  app.use(
    helmet({
      contentSecurityPolicy: {
        directives: { 'script-src': ["'self'"], 'connect-src': ["'self'"] },
      },
    }),
  )
  app.use(livePageRouter({ path: '/', devToken }))
  app.use('/v1', (req, res) => {
    const isStream = /^\/v1\/(events|jobs\/[^/]+\/events)/.test(req.originalUrl)
    if (isStream) {
      const lastEventId = req.headers['last-event-id']
      streams.push({ url: req.originalUrl, lastEventId: lastEventId as string | undefined })
      open.add(res)
      res.on('close', () => open.delete(res))
    }
    const out = httpRequest(
      {
        host: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path: req.originalUrl,
        headers: req.headers,
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers)
        answer.pipe(res)
        // The upstream connection broke mid-answer: break the page's too, as a proxy would.
        answer.on('close', () => {
          if (!answer.complete) res.destroy()
        })
      },
    )
    out.on('error', () => res.destroy())
    res.on('close', () => out.destroy())
    req.pipe(out)
  })
  const server: Server = createServer(app)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  return {
    url: `http://127.0.0.1:${port}`,
    streams,
    cutStreams: () => {
      const n = open.size
      for (const res of open) res.socket?.destroy()
      return n
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

beforeAll(async () => {
  if (!hasChromium) return
  database = await createTestDatabase()
  service = await startTestService(database.url)
  worker = startDemoWorker({ connectionString: database.url, concurrency: 2, reapIntervalMs: 0 })
  sql = new pg.Client({ connectionString: database.url })
  await sql.connect()
  tenant = newTenant()
  outage = await startTcpProxy(targetOf(service.url))
  front = await startFrontServer(service.url, `http://127.0.0.1:${outage.port}`, tenant.admin)
  mkdirSync(OUTPUT_DIR, { recursive: true })
  userDataDir = await mkdtemp(join(tmpdir(), 'jobwire-chromium-'))
  const { chromium } = await import('playwright-core')
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_FLAGS,
    viewport: { width: 1280, height: 900 },
  })
}, 60_000)

afterAll(async () => {
  await context?.close()
  if (userDataDir) await rm(userDataDir, { recursive: true, force: true })
  await front?.close()
  await outage?.close()
  await worker?.stop({ graceMs: 0 })
  await sql?.end()
  await service?.close()
  await database?.drop()
}, 30_000)

/** Opens the page and collects what would show up red in the browser console. */
async function openPage(
  prepare: (page: Page) => unknown = () => undefined,
): Promise<{ page: Page; problems: string[] }> {
  const page = await context.newPage()
  await prepare(page)
  const problems: string[] = []
  page.on('console', (message: ConsoleMessage) => {
    if (message.type() === 'error') problems.push(message.text())
  })
  page.on('pageerror', (error) => problems.push(String(error)))
  await page.goto(front.url + '/')
  return { page, problems }
}

const valueNow = (page: Page, id: string) =>
  page
    .locator(`li[data-job-id="${id}"] .progress`)
    .getAttribute('aria-valuenow')
    .then((v) => Number(v ?? 0))

async function waitForProgress(page: Page, id: string, atLeast: number): Promise<number> {
  await page.waitForFunction(
    ([jobId, min]) =>
      Number(
        document
          .querySelector(`li[data-job-id="${jobId}"] .progress`)
          ?.getAttribute('aria-valuenow') ?? 0,
      ) >= Number(min),
    [id, atLeast] as const,
    { timeout: 15_000 },
  )
  return valueNow(page, id)
}

/** Every reconnect delay is 99 % of its ceiling: full jitter made predictable from outside. */
const predictableBackoff = (page: Page) =>
  page.addInitScript(() => {
    Math.random = () => 0.99
  })
/** The client's default backoff cap (src/client/backoff.ts). */
const BACKOFF_CAP_MS = 10_000

async function waitUntilOpen(page: Page): Promise<void> {
  await page.getByText(/Using the (dev|saved) token\./).waitFor()
  await page.locator('#connection-state[data-state="open"]').waitFor({ timeout: 15_000 })
}

/**
 * Waits until the connection label reads "reconnecting in N s" with N ≥ `atLeastSeconds`,
 * for a wait other than `notRetryAt`; returns N and that wait's retry time.
 */
async function reconnectWait(
  page: Page,
  atLeastSeconds: number,
  notRetryAt = '',
): Promise<{ seconds: number; retryAt: string }> {
  const handle = await page.waitForFunction(
    ([min, not]) => {
      const pill = document.querySelector<HTMLElement>('#connection-state')!
      const match = /^reconnecting in (\d+) s$/.exec(pill.textContent ?? '')
      const retryAt = pill.dataset.retryAt ?? ''
      return match && Number(match[1]) >= Number(min) && retryAt !== not
        ? { seconds: Number(match[1]), retryAt }
        : false
    },
    [atLeastSeconds, notRetryAt] as const,
    { timeout: 60_000 },
  )
  return (await handle.jsonValue()) as { seconds: number; retryAt: string }
}

async function createFromPage(page: Page, button: string, seconds: number): Promise<string> {
  const before = await page.locator('li.job').count()
  await page.getByLabel('Duration in seconds').fill(String(seconds))
  await page.getByRole('button', { name: button }).click()
  await page.waitForFunction((n) => document.querySelectorAll('li.job').length > n, before)
  const id = await page.locator('li.job').first().getAttribute('data-job-id')
  if (!id) throw new Error('the new job has no id on the page')
  return id
}

describe('the served client', () => {
  itInBrowser(
    'loads as a module from the service into a page on another origin, under its CSP',
    async () => {
      const page = await context.newPage()
      const problems: string[] = []
      page.on('console', (message) => {
        if (message.type() === 'error') problems.push(message.text())
      })
      page.on('pageerror', (error) => problems.push(String(error)))
      await page.goto(front.url + '/module-check/')
      await page
        .locator('body[data-label="Running running"]')
        .waitFor({ state: 'attached', timeout: 10_000 })
      expect(problems).toEqual([])
      await page.close()
    },
    30_000,
  )
})

describe('the live page', () => {
  itInBrowser(
    'shows a demo job move to its result, and resumes after its stream is cut',
    async () => {
      const { page, problems } = await openPage()
      await page.getByRole('button', { name: 'Use the dev token' }).click()
      await page.getByText('Using the dev token.').waitFor()

      const id = await createFromPage(page, 'Create a demo job', 6)
      const card = page.locator(`li[data-job-id="${id}"]`)
      await card.locator('.badge', { hasText: 'Running' }).waitFor({ timeout: 10_000 })
      const early = await waitForProgress(page, id, 15)
      expect(early).toBeLessThan(100)
      await page.locator('#connection-state[data-state="open"]').waitFor()
      await page.screenshot({ path: join(OUTPUT_DIR, 'live-page-running.png') })

      // Cut the page's event stream and the service's LISTEN connection at once.
      const streamsBefore = front.streams.length
      expect(front.cutStreams()).toBe(1)
      await sql.query(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE application_name = 'jobwire-listener' AND datname = current_database()`,
      )
      const later = await waitForProgress(page, id, early + 20)
      expect(later).toBeGreaterThan(early)
      const resumed = front.streams.slice(streamsBefore)
      expect(resumed.length).toBeGreaterThanOrEqual(1)
      // The tenant feed resumes from the server clock of the last event it had.
      expect(resumed[0]!.lastEventId).toMatch(/^f\./)

      await card.locator('.badge', { hasText: 'Completed' }).waitFor({ timeout: 15_000 })
      await card.locator('.job-result', { hasText: 'Demo job finished' }).waitFor()
      expect(await valueNow(page, id)).toBe(100)
      expect(await card.locator('.job-eta').textContent()).toBe('—')
      expect(await page.locator('#announcer').textContent()).toMatch(/Completed/)
      const final = (await (
        await service.fetch(`/v1/jobs/${id}`, { token: tenant.admin })
      ).json()) as { version: number; result: unknown }
      expect(await card.locator('.job-version').textContent()).toBe(String(final.version))
      expect(await card.locator('.job-cancel').isVisible()).toBe(false)
      await page.screenshot({
        path: join(OUTPUT_DIR, 'live-page.png'),
        fullPage: true,
        animations: 'disabled',
      })
      // The one network error is the stream this test cut.
      expect(problems.filter((p) => !/ERR_INCOMPLETE_CHUNKED_ENCODING/.test(p))).toEqual([])
      await page.close()
    },
    60_000,
  )

  itInBrowser(
    "shows a failing job's error",
    async () => {
      const { page, problems } = await openPage()
      await page.getByText(/Using the (dev|saved) token\./).waitFor()
      const id = await createFromPage(page, 'Create a failing job', 2)
      const card = page.locator(`li[data-job-id="${id}"]`)
      await card.locator('.badge', { hasText: 'Failed' }).waitFor({ timeout: 15_000 })
      await card.locator('.job-result', { hasText: 'Demo failure' }).waitFor()
      expect(await card.locator('.job-result').textContent()).toContain('demo_failure')
      expect(await card.locator('.outcome-label').textContent()).toBe('Error')
      // One column on a phone.
      await page.setViewportSize({ width: 390, height: 844 })
      await page.screenshot({
        path: join(OUTPUT_DIR, 'live-page-phone.png'),
        animations: 'disabled',
      })
      expect(problems).toEqual([])
      await page.close()
    },
    60_000,
  )

  itInBrowser(
    'takes a pasted token, and says so when one is refused',
    async () => {
      const { page } = await openPage()
      const other = newTenant()
      await page.getByLabel('Bearer token (a JWT for your tenant)').fill('not-a-jwt')
      await page.getByRole('button', { name: 'Use this token' }).click()
      await page.getByText(/That token was refused/).waitFor()

      await page.getByLabel('Bearer token (a JWT for your tenant)').fill(other.alice)
      await page.getByRole('button', { name: 'Use this token' }).click()
      await page.getByText('Using the pasted token.').waitFor()
      // Another tenant: none of the demo tenant's jobs.
      await page.getByText('No jobs yet: create one above.').waitFor()
      expect(await page.locator('li.job').count()).toBe(0)
      await page.close()
    },
    60_000,
  )

  itInBrowser(
    'watches the tenant feed on one connection: adding jobs opens no new one',
    async () => {
      const feedRequests: string[] = []
      const { page, problems } = await openPage((p) =>
        p.on('request', (request) => {
          const url = new URL(request.url())
          if (url.pathname === '/v1/events') feedRequests.push(url.search)
        }),
      )
      await waitUntilOpen(page)
      const ids: string[] = []
      for (let i = 0; i < 3; i++) ids.push(await createFromPage(page, 'Create a demo job', 2))
      // Every job is watched live, over the one connection that was already open.
      for (const id of ids)
        await page
          .locator(`li[data-job-id="${id}"] .badge`, { hasText: 'Completed' })
          .waitFor({ timeout: 20_000 })
      expect(feedRequests).toEqual([''])
      expect(problems).toEqual([])
      await page.close()
    },
    60_000,
  )

  itInBrowser(
    'counts down while it waits to reconnect, and "Retry now" skips the wait',
    async () => {
      const { page } = await openPage(predictableBackoff)
      const retryNow = page.getByRole('button', { name: 'Retry now' })
      await waitUntilOpen(page)
      expect(await retryNow.isVisible()).toBe(false)
      outage.pause()
      try {
        // The third wait (3.96 s) is long enough to watch its label count down.
        const wait = await reconnectWait(page, 3)
        await page.waitForFunction(
          ([seconds, retryAt]) => {
            const pill = document.querySelector<HTMLElement>('#connection-state')!
            return (
              pill.textContent === `reconnecting in ${Number(seconds) - 1} s` &&
              pill.dataset.retryAt === retryAt
            )
          },
          [wait.seconds, wait.retryAt] as const,
        )
        expect(await retryNow.isVisible()).toBe(true)
        await page.screenshot({ path: join(OUTPUT_DIR, 'live-page-reconnecting.png') })

        // During the next wait (7.92 s) the service comes back: the button does not wait.
        const long = await reconnectWait(page, 5, wait.retryAt)
        outage.resume()
        await page.evaluate(() => {
          const pill = document.querySelector<HTMLElement>('#connection-state')!
          const seen = window as unknown as { openedAt?: number }
          new MutationObserver(() => {
            if (pill.dataset.state === 'open') seen.openedAt ??= Date.now()
          }).observe(pill, { attributes: true })
        })
        await retryNow.click()
        await page.locator('#connection-state[data-state="open"]').waitFor({ timeout: 15_000 })
        const openedAt = await page.evaluate(
          () => (window as unknown as { openedAt?: number }).openedAt,
        )
        expect(openedAt).toBeLessThan(Number(long.retryAt))
        expect(await retryNow.isVisible()).toBe(false)
      } finally {
        outage.resume()
        await page.close()
      }
    },
    90_000,
  )

  itInBrowser(
    'is live again within the backoff cap once a long outage ends',
    async () => {
      const { page } = await openPage(predictableBackoff)
      await waitUntilOpen(page)
      const id = await createFromPage(page, 'Create a demo job', 90)
      const before = await waitForProgress(page, id, 2)
      outage.pause()
      try {
        // Hold the outage until the backoff has reached its cap twice (about 25 s in all).
        const first = await reconnectWait(page, 9)
        await reconnectWait(page, 9, first.retryAt)
        outage.resume()
        // Back within the cap (plus time for the request itself), not after a 30 s wait.
        await page
          .locator('#connection-state[data-state="open"]')
          .waitFor({ timeout: BACKOFF_CAP_MS + 5000 })
        expect(await waitForProgress(page, id, before + 1)).toBeGreaterThan(before)
        await page.getByRole('button', { name: `Cancel demo job ${id.slice(0, 8)}` }).click()
      } finally {
        outage.resume()
        await page.close()
      }
    },
    120_000,
  )
})
