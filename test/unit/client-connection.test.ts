// The client's reconnect policy seen from its connection state, with a fake fetch and fake
// timers: delays grow and are capped, an unreachable server never triggers the long-poll
// fallback, and streams that stay silent do.
import { jest } from '@jest/globals'
import { watch, type ConnectionState } from '../../src/client/index.js'
import type { JobDocument } from '../../src/protocol/job.js'

const JOB = '00000000-0000-4000-8000-000000000001'
const doc = (version: number, status: JobDocument['status'] = 'running') =>
  ({ id: JOB, type: 'demo', status, progress: version, version }) as unknown as JobDocument

beforeEach(() => {
  jest.useFakeTimers()
  jest.spyOn(Math, 'random').mockReturnValue(0.999_999)
})
afterEach(() => {
  jest.useRealTimers()
  jest.restoreAllMocks()
})

/** A response body that sends nothing until the request is aborted. */
function silentStream(signal: AbortSignal | null | undefined): Response {
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      signal?.addEventListener('abort', () => controller.error(new Error('aborted')))
    },
  })
  return new Response(body, { status: 200, headers: { 'content-type': 'text/event-stream' } })
}

it('waits longer after each failure, up to the cap, with full jitter', async () => {
  const states: ConnectionState[] = []
  const fetchImpl = jest.fn<typeof fetch>(() => Promise.reject(new TypeError('refused')))
  const watcher = watch(JOB, {
    baseUrl: 'http://jobwire.test',
    token: 't',
    fetch: fetchImpl,
    backoff: { baseMs: 100, capMs: 800, resetAfterMs: 10_000 },
    fallbackAfterFailures: 2,
    onState: (s) => states.push(s),
  })
  for (let i = 0; i < 7; i++) await jest.advanceTimersByTimeAsync(800)
  const delays = states.flatMap((s) => (typeof s === 'object' ? [s.inMs] : []))
  expect(delays.slice(0, 6)).toEqual([100, 200, 400, 800, 800, 800])
  // Unreachable is not a stream problem: it never falls back to polling.
  expect(states).not.toContain('polling')
  expect(fetchImpl.mock.calls.every(([url]) => String(url).endsWith(`/jobs/${JOB}/events`))).toBe(
    true,
  )
  watcher.close()
  expect(watcher.state).toBe('closed')
})

it('long-polls after N silent streams, and streams again later', async () => {
  const states: ConnectionState[] = []
  const urls: string[] = []
  const fetchImpl = jest.fn<typeof fetch>((input, init) => {
    const url = String(input)
    urls.push(url)
    if (url.includes('/events')) return Promise.resolve(silentStream(init?.signal))
    // The first poll answers at once; later ones park until aborted.
    if (urls.filter((u) => u.includes('/wait')).length === 1)
      return Promise.resolve(Response.json(doc(3)))
    return new Promise((_, reject) =>
      init?.signal?.addEventListener('abort', () => reject(new Error('aborted'))),
    )
  })
  const watcher = watch(JOB, {
    baseUrl: 'http://jobwire.test',
    fetch: fetchImpl,
    backoff: { baseMs: 100, capMs: 100 },
    firstByteTimeoutMs: 1000,
    fallbackAfterFailures: 3,
    retryStreamAfterMs: 5000,
    onState: (s) => states.push(s),
  })
  await jest.advanceTimersByTimeAsync(3 * 1000 + 2 * 100 + 10)
  expect(watcher.state).toBe('polling')
  expect(urls.filter((u) => u.includes('/events'))).toHaveLength(3)
  expect(urls.find((u) => u.includes('/wait'))).toMatch(/\/wait\?since=0&timeout=25$/)
  expect(watcher.current).toMatchObject({ version: 3 })
  expect(urls.at(-1)).toMatch(/\/wait\?since=3&timeout=25$/)

  // After retryStreamAfterMs: one more stream; it stays silent, so straight back to polling.
  await jest.advanceTimersByTimeAsync(5000)
  expect(urls.filter((u) => u.includes('/events'))).toHaveLength(4)
  await jest.advanceTimersByTimeAsync(1000)
  expect(watcher.state).toBe('polling')
  expect(urls.filter((u) => u.includes('/events'))).toHaveLength(4)
  watcher.close()
})
