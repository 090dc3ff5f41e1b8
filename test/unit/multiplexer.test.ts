// The Multiplexer over a fake sink: per job a snapshot (or one resume patch), patches that
// test their base version, an end, then nothing; the tenant feed beside the subscriptions;
// congestion merges instead of queueing; bytes are encoded once per change and base.
import { JobChange, JobState } from '../../src/events/job-state.js'
import type { FeedWatcher, PendingWatch, Watcher, WatchHandle } from '../../src/events/hub.js'
import { applyDocumentPatch } from '../../src/events/patch.js'
import type { JobDocument } from '../../src/protocol/job.js'
import {
  FEED_MEMORY_MAX_JOBS,
  Multiplexer,
  type MuxMessage,
  type MuxSink,
} from '../../src/transports/multiplexer.js'
import { jobDocument } from '../helpers/job-document.js'

class FakeSink implements MuxSink {
  readonly encoding = 'ws' as const
  needsPositions = true
  readonly written: Array<{ message: MuxMessage; job?: string; version?: number }> = []
  encodes = 0
  isBusy = false
  idles = 0

  encode(message: MuxMessage): Buffer {
    this.encodes++
    return Buffer.from(JSON.stringify(message))
  }

  write(bytes: Buffer, job?: string, version?: number): void {
    this.written.push({ message: JSON.parse(bytes.toString()) as MuxMessage, job, version })
  }

  isCongested(): boolean {
    return this.isBusy
  }

  onIdle(): void {
    this.idles++
  }

  get messages(): MuxMessage[] {
    return this.written.map((w) => w.message)
  }

  types(job?: string): string[] {
    return this.messages
      .filter((m) => job === undefined || ('job' in m && m.job === job))
      .map((m) => m.type)
  }
}

const JOB = '00000000-0000-4000-8000-000000000001'
const OTHER = '00000000-0000-4000-8000-000000000002'

function doc(version: number, patch: Partial<JobDocument> = {}, id = JOB): JobDocument {
  return jobDocument(id, version, patch)
}

/** A hub stand-in for one job: its state, and a handle whose close() is counted. */
class FakeJob {
  readonly state: JobState
  closes = 0
  cancels = 0
  constructor(
    first: JobDocument,
    readonly id = first.id,
  ) {
    this.state = new JobState(id, 16)
    this.state.advance(first)
  }

  /** An authorised watch on this job, as subscribeJob resolves it. */
  watch(): PendingWatch {
    return {
      state: this.state,
      attach: (watcher: Watcher): WatchHandle => {
        this.state.watchers.add(watcher)
        return {
          state: this.state,
          close: () => {
            this.closes++
            this.state.watchers.delete(watcher)
          },
        }
      },
      cancel: () => this.cancels++,
    }
  }

  /** Moves to `next` and hands the change to every watcher, as the hub does. */
  change(next: JobDocument, feeds: FeedWatcher[] = []): JobChange {
    const previous = this.state.current
    this.state.advance(next)
    const change = new JobChange(this.state, next, previous)
    for (const w of [...this.state.watchers]) w.onChange(change)
    for (const f of feeds) f.onChange(change)
    return change
  }
}

function subscribe(mux: Multiplexer, job: FakeJob, resumeFrom?: number): void {
  mux.start(mux.prepare(job.id), job.watch(), resumeFrom)
}

/** Applies every snapshot and patch the sink received for `id`. */
function clientView(sink: FakeSink, id = JOB, from?: JobDocument): JobDocument | undefined {
  let view = from
  for (const m of sink.messages) {
    if (!('job' in m) || m.job !== id) continue
    if (m.type === 'snapshot') view = m.doc
    if (m.type === 'patch') view = applyDocumentPatch(view!, m.patch)
  }
  return view
}

describe('job subscriptions', () => {
  it('sends a snapshot, patches that test the base version, then an end, and drops the job', () => {
    const sink = new FakeSink()
    const mux = new Multiplexer(sink, undefined)
    const job = new FakeJob(doc(1))
    subscribe(mux, job)
    expect(sink.messages).toEqual([{ type: 'snapshot', job: JOB, version: 1, doc: doc(1) }])
    expect(mux.positions()).toEqual(new Map([[JOB, 1]]))

    job.change(doc(2, { status: 'running', progress: 50 }))
    const patch = sink.messages[1]!
    expect(patch).toMatchObject({ type: 'patch', job: JOB, version: 2 })
    expect(patch.type === 'patch' && patch.patch[0]).toEqual({
      op: 'test',
      path: '/version',
      value: 1,
    })
    expect(sink.written[1]).toMatchObject({ job: JOB, version: 2 })

    job.change(doc(3, { status: 'completed', progress: 100, result: { ok: true } }))
    expect(sink.types()).toEqual(['snapshot', 'patch', 'patch', 'end'])
    expect(sink.messages[3]).toEqual({ type: 'end', job: JOB, version: 3, status: 'completed' })
    expect(clientView(sink)).toEqual(job.state.current)
    expect(mux.size).toBe(0)
    expect(job.closes).toBe(1)
    expect(sink.idles).toBe(1)
    // An ended job keeps its final position in the resume id.
    expect(mux.positions()).toEqual(new Map([[JOB, 3]]))
  })

  it('keeps no ended positions for a sink that does not need them (WebSocket)', () => {
    const sink = new FakeSink()
    sink.needsPositions = false
    const mux = new Multiplexer(sink, undefined)
    const job = new FakeJob(doc(1))
    subscribe(mux, job)
    job.change(doc(2, { status: 'completed' }))
    expect(sink.types()).toEqual(['snapshot', 'patch', 'end'])
    expect(mux.positions()).toEqual(new Map())
  })

  it('resumes with one patch from a version in the history, nothing when current', () => {
    const job = new FakeJob(doc(1))
    job.state.advance(doc(2, { progress: 20 }))
    job.state.advance(doc(3, { progress: 30 }))

    const patched = new FakeSink()
    subscribe(new Multiplexer(patched, undefined), job, 2)
    expect(patched.types()).toEqual(['patch'])
    expect(clientView(patched, JOB, doc(2, { progress: 20 }))).toEqual(doc(3, { progress: 30 }))

    const current = new FakeSink()
    subscribe(new Multiplexer(current, undefined), job, 3)
    expect(current.messages).toEqual([])
    job.change(doc(4, { progress: 40 }))
    expect(current.types()).toEqual(['patch'])
    expect(clientView(current, JOB, doc(3, { progress: 30 }))).toEqual(doc(4, { progress: 40 }))
  })

  it('sends a snapshot when the history no longer has the resume version', () => {
    const job = new FakeJob(doc(5, { progress: 50 }))
    const sink = new FakeSink()
    subscribe(new Multiplexer(sink, undefined), job, 2)
    expect(sink.messages).toEqual([
      { type: 'snapshot', job: JOB, version: 5, doc: job.state.current },
    ])
  })

  it('ends a job that is already terminal right after its snapshot', () => {
    const job = new FakeJob(doc(4, { status: 'failed', error: { message: 'x' } }))
    const sink = new FakeSink()
    const mux = new Multiplexer(sink, undefined)
    subscribe(mux, job)
    expect(sink.types()).toEqual(['snapshot', 'end'])
    expect(job.closes).toBe(1)
    expect(sink.idles).toBe(1)
  })

  it('goes idle only after the last of several finished jobs started', () => {
    const a = new FakeJob(doc(2, { status: 'completed' }))
    const b = new FakeJob(doc(3, { status: 'cancelled' }, OTHER))
    const sink = new FakeSink()
    const mux = new Multiplexer(sink, undefined)
    const wa = mux.prepare(a.id)
    const wb = mux.prepare(b.id)
    mux.start(wa, a.watch(), undefined)
    expect(sink.idles).toBe(0)
    mux.start(wb, b.watch(), undefined)
    expect(sink.types()).toEqual(['snapshot', 'end', 'snapshot', 'end'])
    expect(sink.idles).toBe(1)
  })

  it('counts jobs being started in reserved and has()', () => {
    const mux = new Multiplexer(new FakeSink(), undefined)
    const job = new FakeJob(doc(1))
    const watcher = mux.prepare(JOB)
    expect(mux.has(JOB)).toBe(true)
    expect(mux.size).toBe(0)
    expect(mux.reserved).toBe(1)
    mux.abandon(watcher)
    expect(mux.has(JOB)).toBe(false)
    expect(mux.reserved).toBe(0)
    mux.start(watcher, job.watch(), undefined)
    expect(mux.size).toBe(1)
    expect(mux.reserved).toBe(1)
  })

  it('keeps the first of two concurrent subscriptions to one job and closes the other', () => {
    const sink = new FakeSink()
    const mux = new Multiplexer(sink, undefined)
    const job = new FakeJob(doc(1))
    const first = mux.prepare(JOB)
    const second = mux.prepare(JOB)
    expect(second).not.toBe(first)
    mux.start(first, job.watch(), undefined)
    mux.start(second, job.watch(), undefined)
    expect(job.cancels).toBe(1)
    expect(sink.types()).toEqual(['snapshot'])
    expect(mux.size).toBe(1)
  })

  it('unsubscribes: the handle closes and a change already on its way is not sent', () => {
    const sink = new FakeSink()
    const mux = new Multiplexer(sink, undefined)
    const job = new FakeJob(doc(1))
    const watcher = mux.prepare(JOB)
    mux.start(watcher, job.watch(), undefined)
    mux.unsubscribe(JOB)
    expect(job.closes).toBe(1)
    expect(sink.idles).toBe(1)
    job.state.advance(doc(2))
    watcher.onChange(new JobChange(job.state, doc(2), doc(1)))
    expect(sink.types()).toEqual(['snapshot'])
  })

  it('cancels a job unsubscribed while its read is in flight: start() only closes it', () => {
    const sink = new FakeSink()
    const mux = new Multiplexer(sink, undefined)
    const job = new FakeJob(doc(1))
    const watcher = mux.prepare(JOB)
    const watch = job.watch()
    mux.unsubscribe(JOB)
    expect(mux.has(JOB)).toBe(false)
    expect(mux.reserved).toBe(0)
    mux.start(watcher, watch, undefined)
    expect(job.cancels).toBe(1)
    expect(job.state.watchers.size).toBe(0)
    expect(mux.size).toBe(0)
    job.change(doc(2, { progress: 10 }))
    expect(sink.messages).toEqual([])

    // Subscribing again while the cancelled read is still out starts the new one only.
    const first = mux.prepare(JOB)
    const firstWatch = job.watch()
    mux.unsubscribe(JOB)
    const second = mux.prepare(JOB)
    mux.start(second, job.watch(), undefined)
    mux.start(first, firstWatch, undefined)
    expect(sink.types()).toEqual(['snapshot'])
    expect(mux.size).toBe(1)
    expect(job.cancels).toBe(2)
  })

  it('merges changes made while the sink is congested into one patch on drain', () => {
    const sink = new FakeSink()
    const mux = new Multiplexer(sink, undefined)
    const job = new FakeJob(doc(1))
    subscribe(mux, job)
    sink.isBusy = true
    job.change(doc(2, { progress: 10 }))
    job.change(doc(3, { progress: 20, step: 'b' }))
    job.change(doc(4, { progress: 30, step: null, eta_seconds: 9 }))
    expect(sink.types()).toEqual(['snapshot'])
    mux.drain()
    expect(sink.types()).toEqual(['snapshot'])
    sink.isBusy = false
    mux.drain()
    expect(sink.types()).toEqual(['snapshot', 'patch'])
    expect(sink.messages[1]).toMatchObject({ version: 4 })
    expect(clientView(sink)).toEqual(job.state.current)
  })

  it('merges from what the client has even when the history dropped that version', () => {
    const sink = new FakeSink()
    const mux = new Multiplexer(sink, undefined)
    const job = new FakeJob(doc(1))
    subscribe(mux, job)
    sink.isBusy = true
    for (let v = 2; v <= 40; v++) job.change(doc(v, { progress: v }))
    expect(job.state.documentAt(1)).toBeUndefined()
    sink.isBusy = false
    mux.drain()
    expect(sink.types()).toEqual(['snapshot', 'patch'])
    expect(clientView(sink)).toEqual(doc(40, { progress: 40 }))
  })

  it('encodes a change once for every connection on the same base version', () => {
    const sink = new FakeSink()
    const job = new FakeJob(doc(1))
    const muxes = [1, 2, 3].map(() => new Multiplexer(sink, undefined))
    for (const mux of muxes) subscribe(mux, job)
    const before = sink.encodes
    job.change(doc(2, { progress: 5 }))
    expect(sink.encodes - before).toBe(1)
    expect(sink.types()).toEqual(['snapshot', 'snapshot', 'snapshot', 'patch', 'patch', 'patch'])
  })

  it('sends an end with status deleted when the job is gone', () => {
    const sink = new FakeSink()
    const mux = new Multiplexer(sink, undefined)
    const job = new FakeJob(doc(2))
    subscribe(mux, job)
    for (const w of [...job.state.watchers]) w.onGone(JOB)
    expect(sink.messages[1]).toEqual({ type: 'end', job: JOB, version: 2, status: 'deleted' })
    expect(mux.size).toBe(0)
    expect(job.closes).toBe(1)
  })

  it('after close() sends nothing, closes every handle and cancels the watches of jobs started later', () => {
    const sink = new FakeSink()
    const mux = new Multiplexer(sink, undefined)
    const a = new FakeJob(doc(1))
    const b = new FakeJob(doc(1, {}, OTHER))
    subscribe(mux, a)
    const late = mux.prepare(OTHER)
    let unwatched = 0
    mux.openFeed(() => () => unwatched++)
    mux.close()
    expect(a.closes).toBe(1)
    expect(unwatched).toBe(1)
    mux.start(late, b.watch(), undefined)
    expect(b.cancels).toBe(1)
    expect(b.state.watchers.size).toBe(0)
    a.change(doc(2))
    expect(sink.types()).toEqual(['snapshot'])
    expect(sink.idles).toBe(0)
  })

  it('sends errors with and without a job', () => {
    const sink = new FakeSink()
    const mux = new Multiplexer(sink, undefined)
    mux.error(404, 'nope', JOB)
    mux.error(400, 'bad')
    expect(sink.messages).toEqual([
      { type: 'error', status: 404, detail: 'nope', job: JOB },
      { type: 'error', status: 400, detail: 'bad' },
    ])
    // No version: an SSE sink gives errors no resume id.
    expect(sink.written.map((w) => w.version)).toEqual([undefined, undefined])
  })
})

describe('the tenant feed', () => {
  function withFeed(ownerId?: string) {
    const sink = new FakeSink()
    const mux = new Multiplexer(sink, ownerId)
    let unwatched = 0
    let feed: FeedWatcher | undefined
    mux.openFeed((watcher) => {
      feed = watcher
      return () => unwatched++
    })
    return { sink, mux, feed: feed!, unwatched: () => unwatched }
  }

  it('keeps the owner it filters on', () => {
    expect(withFeed('alice').feed.ownerId).toBe('alice')
    expect(withFeed().feed.ownerId).toBeUndefined()
  })

  it('sends a snapshot on first sight, then patches, then an end, and forgets the job', () => {
    const { sink, mux, feed } = withFeed()
    const job = new FakeJob(doc(1))
    job.state.watchers.clear()
    const first = new JobChange(job.state, doc(1), undefined)
    feed.onChange(first)
    job.change(doc(2, { status: 'running' }), [feed])
    job.change(doc(3, { status: 'completed', result: 1 }), [feed])
    expect(sink.types()).toEqual(['snapshot', 'patch', 'patch', 'end'])
    expect(clientView(sink)).toEqual(job.state.current)
    expect(mux.hasFeed).toBe(true)
    expect(sink.idles).toBe(0)
  })

  it('remembers at most FEED_MEMORY_MAX_JOBS jobs: the least recently sent gets a snapshot', () => {
    const { sink, feed } = withFeed()
    const id = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`
    const jobs = Array.from({ length: FEED_MEMORY_MAX_JOBS + 1 }, (_, n) => {
      const job = new FakeJob(doc(1, {}, id(n)))
      job.state.watchers.clear()
      return job
    })
    for (const job of jobs.slice(0, -1))
      feed.onChange(new JobChange(job.state, job.state.current!, undefined))
    // Job 0 changes again, so job 1 is now the least recently sent, and is forgotten.
    jobs[0]!.change(doc(2, { progress: 1 }, id(0)), [feed])
    const newest = jobs[FEED_MEMORY_MAX_JOBS]!
    feed.onChange(new JobChange(newest.state, newest.state.current!, undefined))
    sink.written.length = 0
    jobs[1]!.change(doc(2, { progress: 1 }, id(1)), [feed])
    jobs[0]!.change(doc(3, { progress: 2 }, id(0)), [feed])
    expect(sink.messages.map((m) => [m.type, 'job' in m && m.job])).toEqual([
      ['snapshot', id(1)],
      ['patch', id(0)],
    ])
  })

  it('ignores repeated or older versions', () => {
    const { sink, feed } = withFeed()
    const job = new FakeJob(doc(2))
    feed.onChange(new JobChange(job.state, doc(2), undefined))
    feed.onChange(new JobChange(job.state, doc(2), undefined))
    feed.onChange(new JobChange(job.state, doc(1), undefined))
    expect(sink.types()).toEqual(['snapshot'])
  })

  it('leaves subscribed jobs to their subscription, and continues where the feed was', () => {
    const { sink, mux, feed } = withFeed()
    const job = new FakeJob(doc(1))
    feed.onChange(new JobChange(job.state, doc(1), undefined))
    job.change(doc(2, { progress: 2 }), [feed])
    // Subscribing to a job the feed already delivered: no second snapshot.
    subscribe(mux, job)
    expect(sink.types()).toEqual(['snapshot', 'patch'])
    job.change(doc(3, { progress: 3 }), [feed])
    expect(sink.types()).toEqual(['snapshot', 'patch', 'patch'])
    job.change(doc(4, { status: 'completed' }), [feed])
    // The subscription ends the job; the feed, handed the same change, sends nothing more.
    expect(sink.types()).toEqual(['snapshot', 'patch', 'patch', 'patch', 'end'])
    expect(clientView(sink)).toEqual(job.state.current)
  })

  it('skips a job between prepare() and start(): its subscription will send it', () => {
    const { sink, mux, feed } = withFeed()
    const job = new FakeJob(doc(1))
    const watcher = mux.prepare(JOB)
    feed.onChange(new JobChange(job.state, doc(1), undefined))
    expect(sink.messages).toEqual([])
    mux.start(watcher, job.watch(), undefined)
    expect(sink.types()).toEqual(['snapshot'])
  })

  it('merges feed changes made while congested into one message per job on drain', () => {
    const { sink, mux, feed } = withFeed()
    const a = new FakeJob(doc(1))
    const b = new FakeJob(doc(1, {}, OTHER))
    feed.onChange(new JobChange(a.state, doc(1), undefined))
    sink.isBusy = true
    for (let v = 2; v <= 5; v++) a.change(doc(v, { progress: v }), [feed])
    b.change(doc(2, { progress: 1 }, OTHER), [feed])
    b.change(doc(3, { status: 'failed', error: { message: 'x' } }, OTHER), [feed])
    expect(sink.types()).toEqual(['snapshot'])
    sink.isBusy = false
    mux.drain()
    expect(sink.types(JOB)).toEqual(['snapshot', 'patch'])
    expect(sink.types(OTHER)).toEqual(['snapshot', 'end'])
    expect(clientView(sink, JOB)).toEqual(a.state.current)
    expect(clientView(sink, OTHER)).toEqual(b.state.current)
    mux.drain()
    expect(sink.messages).toHaveLength(4)
  })

  it('replays documents read on resume, skipping what it already sent', () => {
    const { sink, mux, feed } = withFeed()
    const job = new FakeJob(doc(3))
    feed.onChange(new JobChange(job.state, doc(3), undefined))
    mux.replay({ doc: doc(2) })
    mux.replay({ doc: doc(3) })
    expect(sink.types()).toEqual(['snapshot'])
    mux.replay({ doc: doc(1, {}, OTHER) })
    expect(sink.types(OTHER)).toEqual(['snapshot'])
  })

  it('replays a finished job with its end, and does not repeat it when its change follows', () => {
    const { sink, mux, feed } = withFeed()
    const job = new FakeJob(doc(4, { status: 'completed' }))
    mux.replay({ doc: job.state.current! })
    expect(sink.types()).toEqual(['snapshot', 'end'])
    feed.onChange(new JobChange(job.state, job.state.current!, undefined))
    expect(sink.types()).toEqual(['snapshot', 'end'])
  })

  it('closeFeed() unwatches, forgets what it sent and may make the connection idle', () => {
    const { sink, mux, feed, unwatched } = withFeed()
    const job = new FakeJob(doc(1))
    feed.onChange(new JobChange(job.state, doc(1), undefined))
    mux.closeFeed()
    expect(unwatched()).toBe(1)
    expect(mux.hasFeed).toBe(false)
    expect(sink.idles).toBe(1)
    // Opened again, the feed starts over with a snapshot.
    let again: FeedWatcher | undefined
    mux.openFeed((w) => {
      again = w
      return () => undefined
    })
    job.change(doc(2), [again!])
    expect(sink.types()).toEqual(['snapshot', 'snapshot'])
  })

  it('opens once: a second openFeed() is ignored', () => {
    const { mux } = withFeed()
    let calls = 0
    mux.openFeed(() => {
      calls++
      return () => undefined
    })
    expect(calls).toBe(0)
  })
})
