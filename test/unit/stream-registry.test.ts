// The StreamRegistry's one ticker: heartbeats to idle streams only, closes streams at their
// maximum lifetime, holds each stream's cap slots until it leaves, and leaves no timer
// behind (fake timers).
import { jest } from '@jest/globals'
import {
  StreamRegistry,
  type RegisteredStream,
  type StreamKind,
} from '../../src/transports/stream-registry.js'

class FakeStream implements RegisteredStream {
  heartbeats = 0
  closedWith: Array<'lifetime' | 'shutdown'> = []
  lastWriteAt = Date.now()
  unregister: () => void = () => undefined

  constructor(
    readonly kind: StreamKind,
    readonly expiresAt: number,
    readonly tenantId = 't1',
  ) {}

  heartbeat(): void {
    this.heartbeats++
    this.lastWriteAt = Date.now()
  }

  close(reason: 'lifetime' | 'shutdown'): void {
    this.closedWith.push(reason)
    this.unregister()
  }
}

function addTo(registry: StreamRegistry, stream: FakeStream): FakeStream {
  stream.unregister = registry.add(stream)
  return stream
}

beforeEach(() => jest.useFakeTimers({ now: new Date('2026-01-01T00:00:00Z') }))
afterEach(() => jest.useRealTimers())

describe('StreamRegistry', () => {
  it('sends a heartbeat to a stream idle for one interval, not before', () => {
    const registry = new StreamRegistry({ heartbeatMs: 15_000 })
    const stream = addTo(registry, new FakeStream('sse', 0))
    jest.advanceTimersByTime(14_000)
    expect(stream.heartbeats).toBe(0)
    jest.advanceTimersByTime(1_000)
    expect(stream.heartbeats).toBe(1)
    jest.advanceTimersByTime(15_000)
    expect(stream.heartbeats).toBe(2)
  })

  it('sends no heartbeat to a stream that keeps writing', () => {
    const registry = new StreamRegistry({ heartbeatMs: 5_000 })
    const stream = addTo(registry, new FakeStream('sse', 0))
    for (let i = 0; i < 20; i++) {
      jest.advanceTimersByTime(1_000)
      stream.lastWriteAt = Date.now()
    }
    expect(stream.heartbeats).toBe(0)
  })

  it('skips streams without a heartbeat (parked long-polls)', () => {
    const registry = new StreamRegistry({ heartbeatMs: 1_000 })
    const waiter: RegisteredStream = {
      kind: 'longpoll',
      tenantId: 't1',
      lastWriteAt: Date.now(),
      expiresAt: 0,
      close: jest.fn(),
    }
    registry.add(waiter)
    jest.advanceTimersByTime(60_000)
    expect(waiter.close).not.toHaveBeenCalled()
    expect(registry.size).toBe(1)
  })

  it('closes a stream at its maximum lifetime, and only that one', () => {
    const registry = new StreamRegistry({ heartbeatMs: 15_000 })
    const short = addTo(registry, new FakeStream('sse', Date.now() + 10_000))
    const long = addTo(registry, new FakeStream('sse', Date.now() + 600_000))
    jest.advanceTimersByTime(9_000)
    expect(short.closedWith).toEqual([])
    jest.advanceTimersByTime(1_000)
    expect(short.closedWith).toEqual(['lifetime'])
    expect(long.closedWith).toEqual([])
    expect(registry.size).toBe(1)
  })

  it('does the same work when tick() is called directly', () => {
    const registry = new StreamRegistry({ heartbeatMs: 15_000 })
    const stream = addTo(registry, new FakeStream('sse', Date.now() + 30_000))
    registry.tick(Date.now() + 15_000)
    expect(stream.heartbeats).toBe(1)
    registry.tick(Date.now() + 30_000)
    expect(stream.closedWith).toEqual(['lifetime'])
  })

  it('runs one timer while streams are open and none once they are gone', () => {
    const registry = new StreamRegistry({ heartbeatMs: 15_000 })
    expect(jest.getTimerCount()).toBe(0)
    const a = addTo(registry, new FakeStream('sse', 0))
    const b = addTo(registry, new FakeStream('ws', 0))
    expect(jest.getTimerCount()).toBe(1)
    a.unregister()
    expect(jest.getTimerCount()).toBe(1)
    b.unregister()
    expect(jest.getTimerCount()).toBe(0)
    expect(registry.size).toBe(0)
  })

  it('ticks at most every second, and every heartbeat interval when shorter', () => {
    const slow = new StreamRegistry({ heartbeatMs: 15_000 })
    const s = addTo(slow, new FakeStream('sse', Date.now() + 1_500))
    jest.advanceTimersByTime(2_000)
    expect(s.closedWith).toEqual(['lifetime'])
  })

  it("frees a stream's slots when it leaves, once, and reports each change once", () => {
    const registry = new StreamRegistry({ heartbeatMs: 15_000 })
    const changes: Array<[StreamKind, string, number]> = []
    registry.onChange = (kind, tenant, delta) => changes.push([kind, tenant, delta])
    let freed = 0
    const a = new FakeStream('sse', 0, 't1')
    a.unregister = registry.add(a, { hold: () => () => freed++ })
    addTo(registry, new FakeStream('longpoll', 0, 't1'))
    addTo(registry, new FakeStream('sse', 0, 't2'))
    expect(registry.countByKind('sse')).toBe(2)
    expect(freed).toBe(0)
    a.unregister()
    a.unregister()
    expect(freed).toBe(1)
    expect(registry.countByKind('sse')).toBe(1)
    expect(changes.filter(([, , d]) => d === -1)).toHaveLength(1)
  })

  it('closes every stream on shutdown and stops its timer', () => {
    const registry = new StreamRegistry({ heartbeatMs: 15_000 })
    const streams = [1, 2, 3].map(() => addTo(registry, new FakeStream('sse', 0)))
    registry.closeAll()
    for (const s of streams) expect(s.closedWith).toEqual(['shutdown'])
    expect(registry.size).toBe(0)
    expect(jest.getTimerCount()).toBe(0)
  })
})
