// Reconnect delays: exponential growth, a cap, full jitter within [0, ceiling], and a reset
// once a connection stayed healthy for resetAfterMs. Fake timers drive the clock.
import { jest } from '@jest/globals'
import { Backoff, sleep } from '../../src/client/backoff.js'

beforeEach(() => jest.useFakeTimers({ now: new Date('2025-01-01T00:00:00Z') }))
afterEach(() => jest.useRealTimers())

const options = { baseMs: 100, capMs: 1600, resetAfterMs: 5000 }

it('doubles the ceiling per failure up to the cap', () => {
  const backoff = new Backoff(options, () => 0.999_999)
  const delays = Array.from({ length: 8 }, () => backoff.nextDelayMs())
  expect(delays).toEqual([100, 200, 400, 800, 1600, 1600, 1600, 1600])
})

it('draws every delay uniformly from [0, ceiling] (full jitter)', () => {
  const backoff = new Backoff(options)
  const seen: number[] = []
  for (let i = 0; i < 2000; i++) {
    const ceiling = backoff.ceilingMs()
    const delay = backoff.nextDelayMs()
    expect(delay).toBeGreaterThanOrEqual(0)
    expect(delay).toBeLessThanOrEqual(ceiling)
    expect(delay).toBeLessThanOrEqual(options.capMs)
    if (ceiling === options.capMs) seen.push(delay)
  }
  // Spread over the whole range, not clustered at the cap.
  expect(Math.min(...seen)).toBeLessThan(options.capMs * 0.1)
  expect(Math.max(...seen)).toBeGreaterThan(options.capMs * 0.9)
  const mean = seen.reduce((a, b) => a + b, 0) / seen.length
  expect(mean).toBeGreaterThan(options.capMs * 0.4)
  expect(mean).toBeLessThan(options.capMs * 0.6)
})

it('the lowest draw is 0 and the highest the ceiling itself', () => {
  expect(new Backoff(options, () => 0).nextDelayMs()).toBe(0)
  const high = new Backoff(options, () => 0.999_999_9)
  for (let i = 0; i < 10; i++) high.nextDelayMs()
  expect(high.nextDelayMs()).toBe(options.capMs)
})

it('starts again from base after a connection stayed healthy for resetAfterMs', () => {
  const backoff = new Backoff(options, () => 0.999_999)
  for (let i = 0; i < 5; i++) backoff.nextDelayMs()
  expect(backoff.ceilingMs()).toBe(1600)

  // Open, but dropped before the healthy period: still growing.
  backoff.opened()
  jest.advanceTimersByTime(options.resetAfterMs - 1)
  expect(backoff.nextDelayMs()).toBe(1600)

  // Open for the whole healthy period: the next failure starts from base.
  backoff.opened()
  jest.advanceTimersByTime(options.resetAfterMs)
  expect(backoff.nextDelayMs()).toBe(100)
  expect(backoff.nextDelayMs()).toBe(200)
})

it('waits at most 1, 2, 4, 8, then 10 s when no option is given, and resets after 10 s', () => {
  const backoff = new Backoff({}, () => 0.999_999)
  const delays = Array.from({ length: 8 }, () => backoff.nextDelayMs())
  expect(delays).toEqual([1000, 2000, 4000, 8000, 10_000, 10_000, 10_000, 10_000])
  expect(backoff.capMs).toBe(10_000)
  expect(backoff.resetAfterMs).toBe(10_000)
})

it('sleep() waits the delay on the fake clock, and ends early on abort', async () => {
  let isDone = false
  const done = sleep(1000).then(() => (isDone = true))
  await jest.advanceTimersByTimeAsync(999)
  expect(isDone).toBe(false)
  await jest.advanceTimersByTimeAsync(1)
  await done
  expect(isDone).toBe(true)

  const controller = new AbortController()
  const aborted = sleep(60_000, controller.signal)
  controller.abort()
  await aborted
  expect(jest.getTimerCount()).toBe(0)
})
