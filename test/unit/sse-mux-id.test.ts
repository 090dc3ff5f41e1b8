// Resume ids of the multiplexed SSE stream: `j.<uuid hex>:<version base 36>,…` for jobs and
// `f.<epoch ms base 36>` for the tenant feed. What SseMuxStream writes parses back to the
// positions it came from; garbage parses to "nothing" (a snapshot), never to a wrong position.
import { EventEmitter } from 'node:events'
import type { ServerResponse } from 'node:http'
import fc from 'fast-check'
import { JobChange, JobState } from '../../src/events/job-state.js'
import type { FeedWatcher, PendingWatch } from '../../src/events/hub.js'
import type { JobDocument } from '../../src/protocol/job.js'
import { SseMuxStream, type SseMuxOptions } from '../../src/transports/sse-mux.js'
import { parseFeedResumeId, parseJobsResumeId } from '../../src/protocol/resume-id.js'
import { StreamRegistry } from '../../src/transports/stream-registry.js'
import { jobDocument } from '../helpers/job-document.js'

/** Just enough of a ServerResponse: records what was written, refuses writes after end. */
class FakeResponse extends EventEmitter {
  chunks: string[] = []
  status: number | undefined
  headersSent = false
  writableLength = 0
  writableEnded = false
  destroyed = false
  socket = { setTimeout: () => undefined }
  writeHead(status: number): this {
    if (this.headersSent) throw new Error('ERR_HTTP_HEADERS_SENT')
    this.status = status
    this.headersSent = true
    return this
  }
  /** Callbacks of writes not yet "flushed" (see flush()). */
  callbacks: Array<(error?: Error | null) => void> = []
  write(chunk: string | Buffer, callback?: (error?: Error | null) => void): boolean {
    if (!this.headersSent) throw new Error('a write before the headers')
    this.chunks.push(chunk.toString())
    this.writableLength += chunk.length
    if (callback) this.callbacks.push(callback)
    return true
  }
  /** The kernel took everything: run the pending write callbacks. */
  flush(): void {
    this.writableLength = 0
    for (const callback of this.callbacks.splice(0)) callback(null)
  }
  cork(): void {}
  uncork(): void {}
  end(): this {
    this.writableEnded = true
    return this
  }
  /** The `id:` lines written, in order. */
  get ids(): string[] {
    return this.chunks.filter((c) => c.startsWith('id: ')).map((c) => c.slice(4).trim())
  }
  get events(): Array<{ event: string; data: Record<string, unknown> }> {
    return this.chunks
      .filter((c) => c.startsWith('event: '))
      .map((c) => {
        const [event, data] = c.split('\n')
        return {
          event: event!.slice(7),
          data: JSON.parse(data!.slice(6)) as Record<string, unknown>,
        }
      })
  }
}

function options(mode: 'jobs' | 'feed'): SseMuxOptions {
  return {
    mode,
    tenantId: 't1',
    ownerId: undefined,
    retryMs: 1000,
    maxLifetimeMs: 60_000,
    highWaterBytes: 64 * 1024,
  }
}

/** An authorised watch on `state`, as subscribeJob resolves it. */
function authorisedWatch(state: JobState): PendingWatch {
  return {
    state,
    attach: (watcher) => {
      state.watchers.add(watcher)
      return { state, close: () => state.watchers.delete(watcher) }
    },
    cancel: () => undefined,
  }
}

function doc(id: string, version: number, status: JobDocument['status'] = 'running'): JobDocument {
  return jobDocument(id, version, { status })
}

const uuid = fc.uuid().map((u) => u.toLowerCase())
const version = fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER })

/** The documented jobs id format, built independently of the server's encoder. */
function jobsId(positions: Map<string, number>): string {
  return `j.${[...positions].map(([id, v]) => `${id.replaceAll('-', '')}:${v.toString(36)}`).join(',')}`
}

describe('parseJobsResumeId', () => {
  it('round-trips any set of job positions', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.tuple(uuid, version), { selector: ([id]) => id, maxLength: 50 }),
        (pairs) => {
          const positions = new Map(pairs)
          expect(parseJobsResumeId(jobsId(positions))).toEqual(positions)
        },
      ),
    )
  })

  it('parses what SseMuxStream writes back to the positions it held', () => {
    const registry = new StreamRegistry({ heartbeatMs: 60_000 })
    const res = new FakeResponse()
    const stream = new SseMuxStream(res as unknown as ServerResponse, options('jobs'))
    stream.open(registry)
    const ids = ['0a000000-0000-4000-8000-00000000000a', 'ffffffff-ffff-4fff-bfff-ffffffffffff']
    const states = ids.map((id, i) => {
      const state = new JobState(id, 8)
      state.advance(doc(id, 35 + i * 1000))
      return state
    })
    for (const state of states) {
      const watcher = stream.mux.prepare(state.id)
      stream.mux.start(watcher, authorisedWatch(state), undefined)
    }
    expect(parseJobsResumeId(res.ids.at(-1))).toEqual(
      new Map([
        [ids[0], 35],
        [ids[1], 1035],
      ]),
    )
    // A change moves one position; the job that ends stays in the id at its final version.
    const next = doc(ids[0]!, 36, 'completed')
    states[0]!.advance(next)
    for (const w of [...states[0]!.watchers]) w.onChange(new JobChange(states[0]!, next, undefined))
    expect(res.events.map((e) => e.event)).toEqual(['snapshot', 'snapshot', 'patch', 'end'])
    expect(parseJobsResumeId(res.ids.at(-1))).toEqual(
      new Map([
        [ids[0], 36],
        [ids[1], 1035],
      ]),
    )
    stream.close('shutdown')
    expect(registry.size).toBe(0)
  })

  it.each([
    ['undefined', undefined],
    ['empty', ''],
    ['only the prefix', 'j.'],
    ['a feed id', 'f.lx2k3m'],
    ['a plain version', '42'],
    ['dashes kept', 'j.0a000000-0000-4000-8000-00000000000a:1'],
    ['upper-case hex', 'j.0A00000000004000800000000000000A:1'],
    ['short hex', 'j.0a00000000004000800000000000000:1'],
    ['no version', 'j.0a00000000004000800000000000000a'],
    ['version 0', 'j.0a00000000004000800000000000000a:0'],
    ['negative version', 'j.0a00000000004000800000000000000a:-1'],
    ['version beyond 2^53', 'j.0a00000000004000800000000000000a:zzzzzzzzzzz'],
    ['version too long', 'j.0a00000000004000800000000000000a:100000000000'],
    ['spaces', 'j. 0a00000000004000800000000000000a:1'],
    ['a second prefix', 'j.j.0a00000000004000800000000000000a:1'],
  ])('ignores garbage: %s', (_name, value) => {
    expect(parseJobsResumeId(value)).toEqual(new Map())
  })

  it('keeps the well-formed parts of a partly broken id', () => {
    const good = '0a00000000004000800000000000000a'
    expect(parseJobsResumeId(`j.nonsense,${good}:a,,${good.replace('a', 'b')}:`)).toEqual(
      new Map([['0a000000-0000-4000-8000-00000000000a', 10]]),
    )
  })
})

describe('parseFeedResumeId', () => {
  it('round-trips any time since 1970 at millisecond precision', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8_640_000_000_000_000 }), (ms) => {
        expect(parseFeedResumeId(`f.${ms.toString(36)}`)).toBe(ms)
      }),
    )
  })

  it('parses what a feed stream writes back to the time it wrote it', () => {
    const res = new FakeResponse()
    const stream = new SseMuxStream(res as unknown as ServerResponse, options('feed'))
    const registry = new StreamRegistry({ heartbeatMs: 60_000 })
    stream.mux.openFeed(() => () => undefined)
    stream.open(registry)
    const before = Date.now()
    stream.mux.replay({ doc: doc('0a000000-0000-4000-8000-00000000000a', 3) })
    const after = Date.now()
    const ms = parseFeedResumeId(res.ids.at(-1))!
    expect(ms).toBeGreaterThanOrEqual(before)
    expect(ms).toBeLessThanOrEqual(after)
    stream.close('shutdown')
  })

  it.each([
    ['undefined', undefined],
    ['empty', ''],
    ['only the prefix', 'f.'],
    ['a jobs id', 'j.0a00000000004000800000000000000a:1'],
    ['zero', 'f.0'],
    ['negative', 'f.-1'],
    ['trailing garbage', 'f.lx2k3m!'],
    ['a space inside', 'f.lx2 k3m'],
    ['upper case', 'f.LX2K3M'],
    ['beyond 2^53', 'f.zzzzzzzzzzz'],
    ['too long', 'f.100000000000'],
    ['a decimal point', 'f.1.5'],
  ])('ignores garbage: %s', (_name, value) => {
    expect(parseFeedResumeId(value)).toBeUndefined()
  })
})

describe('SseMuxStream flow control', () => {
  it('holds feed changes that arrive during the resume read and sends them after the headers', () => {
    const res = new FakeResponse()
    const stream = new SseMuxStream(res as unknown as ServerResponse, options('feed'))
    let feed: FeedWatcher | undefined
    stream.mux.openFeed((watcher) => {
      feed = watcher
      return () => undefined
    })
    const id = '0a000000-0000-4000-8000-00000000000a'
    const state = new JobState(id, 8)
    for (const v of [1, 2, 3]) {
      const next = doc(id, v)
      const previous = state.current
      state.advance(next)
      // Would throw in FakeResponse.write() if written before the headers.
      feed!.onChange(new JobChange(state, next, previous))
    }
    expect(res.chunks).toEqual([])
    const registry = new StreamRegistry({ heartbeatMs: 60_000 })
    stream.open(registry)
    expect(res.status).toBe(200)
    expect(res.events).toEqual([
      { event: 'snapshot', data: { type: 'snapshot', job: id, version: 3, doc: doc(id, 3) } },
    ])
    // The replay read returned an older version: it is not sent again.
    stream.mux.replay({ doc: doc(id, 2) })
    expect(res.events).toHaveLength(1)
    stream.close('shutdown')
  })

  it('reopens once a write past STREAM_HIGH_WATER_BYTES was flushed, with no drain event', () => {
    const res = new FakeResponse()
    const stream = new SseMuxStream(res as unknown as ServerResponse, {
      ...options('jobs'),
      highWaterBytes: 1024,
    })
    stream.open(new StreamRegistry({ heartbeatMs: 60_000 }))
    const id = '0a000000-0000-4000-8000-00000000000a'
    const state = new JobState(id, 8)
    state.advance(doc(id, 1))
    const watcher = stream.mux.prepare(id)
    stream.mux.start(watcher, authorisedWatch(state), undefined)
    const change = (v: number) => {
      const next = { ...doc(id, v), step: 'x'.repeat(200) + v }
      const previous = state.current
      state.advance(next)
      watcher.onChange(new JobChange(state, next, previous))
    }
    // The socket already holds more than our mark, though below its own 16 KiB.
    res.writableLength = 1000
    change(2)
    expect(stream.isCongested()).toBe(true)
    change(3)
    change(4)
    expect(res.events.map((e) => e.event)).toEqual(['snapshot', 'patch'])
    res.flush()
    expect(stream.isCongested()).toBe(false)
    const events = res.events
    expect(events.map((e) => e.event)).toEqual(['snapshot', 'patch', 'patch'])
    expect(events[2]!.data).toMatchObject({ version: 4 })
    expect((events[2]!.data.patch as unknown[])[0]).toEqual({
      op: 'test',
      path: '/version',
      value: 2,
    })
    stream.close('shutdown')
  })
})
