// The client's reconnect policy seen from its connection state, with a fake fetch and fake
// timers: delays grow and are capped, an unreachable server never triggers the long-poll
// fallback, and streams that stay silent do; a wait says when it ends (for a countdown),
// and retryNow() skips it.
import { jest } from '@jest/globals'
import { describeState, watch, watchFeed, type ConnectionState } from '../../src/client/index.js'
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

/** An event stream that sends `text`, then stays open until the request is aborted. */
function sseResponse(text: string, signal: AbortSignal | null | undefined): Response {
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(new TextEncoder().encode(text))
      signal?.addEventListener('abort', () => controller.error(new Error('aborted')))
    },
  })
  return new Response(body, { status: 200, headers: { 'content-type': 'text/event-stream' } })
}

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

it('says when it will retry, so the wait can be counted down', async () => {
  jest.setSystemTime(new Date('2025-01-01T00:00:00Z'))
  const states: ConnectionState[] = []
  const watcher = watch(JOB, {
    baseUrl: 'http://jobwire.test',
    fetch: () => Promise.reject(new TypeError('refused')),
    backoff: { baseMs: 4000, capMs: 4000 },
    onState: (s) => states.push(s),
  })
  await jest.advanceTimersByTimeAsync(1)
  const waiting = states.find((s) => typeof s === 'object')
  expect(waiting).toEqual({ state: 'reconnecting', inMs: 4000, retryAt: Date.now() - 1 + 4000 })
  const retryAt = (waiting as { retryAt: number }).retryAt
  expect(describeState(waiting!, retryAt - 4000)).toBe('reconnecting in 4 s')
  expect(describeState(waiting!, retryAt - 3001)).toBe('reconnecting in 4 s')
  expect(describeState(waiting!, retryAt - 3000)).toBe('reconnecting in 3 s')
  expect(describeState(waiting!, retryAt - 1)).toBe('reconnecting in 1 s')
  expect(describeState(waiting!, retryAt + 50)).toBe('reconnecting now')
  // Without `now` it reads the clock: the same state reads lower as time passes.
  expect(describeState(waiting!)).toBe('reconnecting in 4 s')
  await jest.advanceTimersByTimeAsync(2000)
  expect(describeState(waiting!)).toBe('reconnecting in 2 s')
  watcher.close()
})

it('retryNow() skips the backoff wait, and does nothing while a stream is open', async () => {
  let calls = 0
  let isUp = false
  const fetchImpl = jest.fn<typeof fetch>((_input, init) => {
    calls++
    if (!isUp) return Promise.reject(new TypeError('refused'))
    return Promise.resolve(
      sseResponse(`event: snapshot\ndata: ${JSON.stringify(doc(1))}\n\n`, init?.signal),
    )
  })
  const watcher = watch(JOB, {
    baseUrl: 'http://jobwire.test',
    fetch: fetchImpl,
    backoff: { baseMs: 60_000, capMs: 60_000 },
  })
  await jest.advanceTimersByTimeAsync(1)
  expect(calls).toBe(1)
  expect(watcher.state).toMatchObject({ state: 'reconnecting', inMs: 60_000 })

  isUp = true
  watcher.retryNow()
  await jest.advanceTimersByTimeAsync(1)
  expect(calls).toBe(2)
  expect(watcher.state).toBe('open')
  expect(watcher.current).toMatchObject({ version: 1 })

  watcher.retryNow()
  await jest.advanceTimersByTimeAsync(1000)
  expect(calls).toBe(2)
  expect(watcher.state).toBe('open')
  watcher.close()
})

it('retryNow() ends a long-poll phase and streams at once', async () => {
  const urls: string[] = []
  const fetchImpl = jest.fn<typeof fetch>((input, init) => {
    const url = String(input)
    urls.push(url)
    if (url.includes('/events')) return Promise.resolve(silentStream(init?.signal))
    return new Promise((_, reject) =>
      init?.signal?.addEventListener('abort', () => reject(new Error('aborted'))),
    )
  })
  const watcher = watch(JOB, {
    baseUrl: 'http://jobwire.test',
    fetch: fetchImpl,
    backoff: { baseMs: 100, capMs: 100 },
    firstByteTimeoutMs: 1000,
    fallbackAfterFailures: 1,
    retryStreamAfterMs: 60_000,
  })
  await jest.advanceTimersByTimeAsync(1010)
  expect(watcher.state).toBe('polling')
  const streams = () => urls.filter((u) => u.includes('/events')).length
  expect(streams()).toBe(1)
  watcher.retryNow()
  await jest.advanceTimersByTimeAsync(1)
  expect(streams()).toBe(2)
  expect(watcher.state).toBe('connecting')
  watcher.close()
})

it('a feed with no job to long-poll waits for its next stream attempt instead of spinning', async () => {
  let calls = 0
  const fetchImpl = jest.fn<typeof fetch>((_input, init) => {
    calls++
    return Promise.resolve(silentStream(init?.signal))
  })
  const feed = watchFeed({
    baseUrl: 'http://jobwire.test',
    token: 't',
    fetch: fetchImpl,
    backoff: { baseMs: 100, capMs: 100 },
    firstByteTimeoutMs: 1000,
    fallbackAfterFailures: 1,
    retryStreamAfterMs: 5000,
  })
  await jest.advanceTimersByTimeAsync(1010)
  expect(feed.state).toBe('polling')
  expect(calls).toBe(1)
  await jest.advanceTimersByTimeAsync(3000)
  expect(calls).toBe(1)
  expect(feed.state).toBe('polling')
  await jest.advanceTimersByTimeAsync(2000)
  expect(calls).toBe(2)
  feed.close()
})
