// The progress coalescer, with fake timers: how many writes, when, and which values.
import { jest } from '@jest/globals'
import { ProgressCoalescer, type ProgressValue } from '../../src/worker/progress-coalescer.js'

interface Harness {
  coalescer: ProgressCoalescer
  writes: Array<{ at: number; value: ProgressValue }>
  errors: unknown[]
}

/** Each write takes `writeMs` of fake time. */
function harness(options: { writeMs?: number; fail?: (value: ProgressValue) => boolean } = {}) {
  const h: Harness = {
    writes: [],
    errors: [],
    coalescer: undefined as unknown as ProgressCoalescer,
  }
  const start = Date.now()
  h.coalescer = new ProgressCoalescer(
    (value) =>
      new Promise<void>((resolve, reject) => {
        h.writes.push({ at: Date.now() - start, value })
        setTimeout(
          () => (options.fail?.(value) ? reject(new Error('write failed')) : resolve()),
          options.writeMs ?? 5,
        )
      }),
    { minIntervalMs: 250, onError: (error) => h.errors.push(error) },
  )
  return h
}

beforeEach(() => {
  jest.useFakeTimers({ now: 1_000_000 })
})
afterEach(() => {
  jest.useRealTimers()
})

describe('ProgressCoalescer', () => {
  it('writes the first value at once and merges a burst into one trailing write', async () => {
    const h = harness()
    for (let i = 1; i <= 1000; i++) h.coalescer.push({ progress: i / 10, step: `step ${i}` })
    expect(h.writes).toEqual([{ at: 0, value: { progress: 0.1, step: 'step 1' } }])
    await jest.advanceTimersByTimeAsync(1000)
    expect(h.writes).toEqual([
      { at: 0, value: { progress: 0.1, step: 'step 1' } },
      { at: 250, value: { progress: 100, step: 'step 1000' } },
    ])
  })

  it('writes at most once per interval however often values come', async () => {
    const h = harness()
    // 1,000 values spread over one second: one every millisecond.
    for (let i = 1; i <= 1000; i++) {
      h.coalescer.push({ progress: i / 10 })
      await jest.advanceTimersByTimeAsync(1)
    }
    await jest.advanceTimersByTimeAsync(1000)
    expect(h.writes.length).toBeLessThanOrEqual(6)
    for (let i = 1; i < h.writes.length; i++) {
      expect(h.writes[i]!.at - h.writes[i - 1]!.at).toBeGreaterThanOrEqual(250)
    }
    expect(h.writes.at(-1)!.value.progress).toBe(100)
  })

  it('never runs two writes at once, even when a write is slower than the interval', async () => {
    const h = harness({ writeMs: 600 })
    h.coalescer.push({ progress: 1 })
    await jest.advanceTimersByTimeAsync(100)
    h.coalescer.push({ progress: 2 })
    await jest.advanceTimersByTimeAsync(400) // 500 ms: the first write is still running
    expect(h.writes.length).toBe(1)
    await jest.advanceTimersByTimeAsync(200) // the first write ended at 600 ms
    expect(h.writes.map((w) => [w.at, w.value.progress])).toEqual([
      [0, 1],
      [600, 2],
    ])
  })

  it('keeps the step and ETA of a merged value when a later value omits them', async () => {
    const h = harness()
    h.coalescer.push({ progress: 1 })
    h.coalescer.push({ progress: 2, step: 'loading', etaSeconds: 9 })
    h.coalescer.push({ progress: 3 })
    await jest.advanceTimersByTimeAsync(300)
    expect(h.writes.at(-1)!.value).toEqual({ progress: 3, step: 'loading', etaSeconds: 9 })
  })

  it('flush() writes the pending value without waiting for the interval', async () => {
    const h = harness()
    h.coalescer.push({ progress: 1 })
    h.coalescer.push({ progress: 42 })
    const flushed = h.coalescer.flush()
    await jest.advanceTimersByTimeAsync(20) // two writes of 5 ms, no 250 ms wait
    await flushed
    expect(h.writes.map((w) => [w.at, w.value.progress])).toEqual([
      [0, 1],
      [5, 42],
    ])
  })

  it('drain() writes the pending value at once and takes none after it', async () => {
    const h = harness()
    h.coalescer.push({ progress: 1 })
    h.coalescer.push({ progress: 42, step: 'last' })
    const drained = h.coalescer.drain()
    // A handler's stray callback reporting after it returned: must not race the final write.
    h.coalescer.push({ progress: 43 })
    await jest.advanceTimersByTimeAsync(20)
    await drained
    h.coalescer.push({ progress: 44 })
    await jest.advanceTimersByTimeAsync(1000)
    expect(h.writes.map((w) => [w.at, w.value])).toEqual([
      [0, { progress: 1 }],
      [5, { progress: 42, step: 'last' }],
    ])
  })

  it('drain() resolves only once a write in flight has finished', async () => {
    const h = harness({ writeMs: 100 })
    h.coalescer.push({ progress: 7 })
    let isDrained = false
    void h.coalescer.drain().then(() => (isDrained = true))
    await jest.advanceTimersByTimeAsync(99)
    expect(isDrained).toBe(false)
    await jest.advanceTimersByTimeAsync(1)
    expect(isDrained).toBe(true)
    expect(h.writes).toHaveLength(1)
  })

  it('rounds progress to 2 decimals, the precision the database keeps', async () => {
    const h = harness()
    for (const progress of [(11 / 40) * 100, 57.49999999999999, 100 / 3]) {
      h.coalescer.push({ progress }) // the first is 27.500000000000004
      await jest.advanceTimersByTimeAsync(300)
    }
    expect(h.writes.map((w) => w.value.progress)).toEqual([27.5, 57.5, 33.33])
  })

  it('reports a failed write and carries on with the next value', async () => {
    const h = harness({ fail: (v) => v.progress === 1 })
    h.coalescer.push({ progress: 1 })
    h.coalescer.push({ progress: 2 })
    await jest.advanceTimersByTimeAsync(300)
    expect(h.errors).toHaveLength(1)
    expect(h.writes.map((w) => w.value.progress)).toEqual([1, 2])
  })

  it('ignores values after close()', async () => {
    const h = harness()
    h.coalescer.push({ progress: 1 })
    h.coalescer.push({ progress: 2 })
    h.coalescer.close()
    h.coalescer.push({ progress: 3 })
    await jest.advanceTimersByTimeAsync(1000)
    await h.coalescer.flush()
    expect(h.writes.map((w) => w.value.progress)).toEqual([1])
  })
})
