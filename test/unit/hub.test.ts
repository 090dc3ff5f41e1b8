// The hub's bookkeeping against a fake batched read (no database): what costs a read, how
// notifications are batched, that versions only move forward, that patches and frames are
// built once per base, and that malformed payloads and failed reads are survived.
import { jest } from '@jest/globals'
import { pino } from 'pino'
import { Hub, type FetchedJob, type JobChange, type Watcher } from '../../src/events/hub.js'
import type { JobNotification } from '../../src/events/notification.js'
import type { JobDocument, JobStatus } from '../../src/protocol/job.js'

const TENANT = '0a1b2c3d-4e5f-4a6b-9c8d-7e6f5a4b3c2d'
const logger = pino({ level: 'silent' })

function jobId(n: number): string {
  return `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`
}

function doc(id: string, version: number, patch: Partial<JobDocument> = {}): JobDocument {
  return {
    id,
    type: 'render',
    status: 'running',
    progress: version,
    step: `step ${version}`,
    eta_seconds: null,
    result: null,
    error: null,
    last_error: null,
    attempts: 1,
    max_attempts: 3,
    cancel_requested: false,
    version,
    created_at: '2026-01-01T00:00:00.000Z',
    updated_at: '2026-01-01T00:00:00.000Z',
    started_at: null,
    completed_at: null,
    ...patch,
  }
}

/** The "database": rows by id, and every batched read the hub made. */
class FakeDb {
  readonly rows = new Map<string, JobDocument>()
  readonly reads: string[][] = []
  failuresLeft = 0
  /** When set, reads wait for it (to hold a read in flight). */
  gate: Promise<void> | undefined

  set(d: JobDocument): JobDocument {
    this.rows.set(d.id, d)
    return d
  }

  fetchJobs = async (ids: string[]): Promise<FetchedJob[]> => {
    this.reads.push([...ids])
    if (this.gate) await this.gate
    if (this.failuresLeft > 0) {
      this.failuresLeft--
      throw new Error('connection refused')
    }
    return ids.flatMap((id) => {
      const row = this.rows.get(id)
      return row ? [{ doc: row, tenantId: TENANT, ownerId: 'alice' }] : []
    })
  }
}

/** Records what it is handed once open, as a transport does after its first event. */
class RecordingWatcher implements Watcher {
  readonly changes: JobChange[] = []
  readonly gone: string[] = []
  isOpen = false
  onChange(change: JobChange): void {
    if (this.isOpen) this.changes.push(change)
  }
  onGone(id: string): void {
    this.gone.push(id)
  }
  get versions(): number[] {
    return this.changes.map((c) => c.doc.version)
  }
}

function notification(id: string, version: number, status: JobStatus | 'deleted' = 'running') {
  return { id, tenantId: TENANT, ownerId: 'alice', version, status, ts: undefined }
}

function payload(n: JobNotification): string {
  return JSON.stringify({
    id: n.id,
    tenant_id: n.tenantId,
    owner_id: n.ownerId,
    version: n.version,
    status: n.status,
  })
}

/** Lets the hub's setImmediate-scheduled batches and their awaited reads run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise((resolve) => setImmediate(resolve))
}

let db: FakeDb
let hub: Hub

function newHub(options: { historySize?: number; batchMaxIds?: number } = {}): Hub {
  return new Hub({
    fetchJobs: db.fetchJobs,
    logger,
    historySize: options.historySize ?? 16,
    batchMaxIds: options.batchMaxIds ?? 500,
    batchWindowMs: 0,
  })
}

/**
 * Watches a job the way subscribeJob and a transport do: reserve, seed what the RLS read
 * returned, then attach.
 */
function watch(id: string, watcher: Watcher = new RecordingWatcher()) {
  const pending = hub.reserve(id)
  const row = db.rows.get(id)
  if (row) hub.seed(id, { doc: row, tenantId: TENANT, ownerId: 'alice' })
  if (watcher instanceof RecordingWatcher) watcher.isOpen = true
  return pending.attach(watcher)
}

beforeEach(() => {
  db = new FakeDb()
  hub = newHub()
})
afterEach(() => hub.stop())

describe('Hub', () => {
  it('spends no read on a notification for a job nobody watches', async () => {
    db.set(doc(jobId(1), 2))
    hub.handlePayload(payload(notification(jobId(1), 2)))
    await settle()
    expect(db.reads).toEqual([])
    expect(hub.stats).toMatchObject({ notifications: 1, unwatched: 1, fetches: 0 })
  })

  it('reads notifications that arrive together in one batched query', async () => {
    const watchers = [1, 2, 3].map((n) => {
      db.set(doc(jobId(n), 1))
      const w = new RecordingWatcher()
      watch(jobId(n), w)
      return w
    })
    for (const n of [1, 2, 3]) db.set(doc(jobId(n), 3))
    for (const n of [1, 2, 3]) hub.handleNotification(notification(jobId(n), 2))
    for (const n of [1, 2, 3]) hub.handleNotification(notification(jobId(n), 3))
    hub.handleNotification(notification(jobId(99), 5)) // unwatched: not in the batch
    await settle()
    expect(db.reads).toEqual([[jobId(1), jobId(2), jobId(3)]])
    expect(hub.stats.fetches).toBe(1)
    for (const w of watchers) expect(w.versions).toEqual([3])
  })

  it('forms the next batch from what arrives while a read is in flight', async () => {
    db.set(doc(jobId(1), 1))
    db.set(doc(jobId(2), 1))
    const a = new RecordingWatcher()
    const b = new RecordingWatcher()
    watch(jobId(1), a)
    watch(jobId(2), b)
    let open!: () => void
    db.gate = new Promise((resolve) => (open = resolve))
    db.set(doc(jobId(1), 2))
    hub.handleNotification(notification(jobId(1), 2))
    await settle()
    // While the first read waits, three notifications for job 2 arrive.
    for (const v of [2, 3, 4]) {
      db.set(doc(jobId(2), v))
      hub.handleNotification(notification(jobId(2), v))
    }
    await settle()
    expect(db.reads).toHaveLength(1)
    db.gate = undefined
    open()
    await settle()
    expect(db.reads).toEqual([[jobId(1)], [jobId(2)]])
    expect(a.versions).toEqual([2])
    expect(b.versions).toEqual([4])
  })

  it('splits a large batch at batchMaxIds', async () => {
    hub = newHub({ batchMaxIds: 2 })
    for (const n of [1, 2, 3, 4, 5]) {
      db.set(doc(jobId(n), 1))
      watch(jobId(n))
      db.set(doc(jobId(n), 2))
      hub.handleNotification(notification(jobId(n), 2))
    }
    await settle()
    expect(db.reads.map((r) => r.length)).toEqual([2, 2, 1])
  })

  it('never emits an old or repeated version, whatever order notifications and reads come in', async () => {
    const id = jobId(1)
    db.set(doc(id, 1))
    const w = new RecordingWatcher()
    watch(id, w)
    db.set(doc(id, 3))
    hub.handleNotification(notification(id, 3))
    await settle()
    // Late and repeated notifications for versions already seen cost nothing.
    hub.handleNotification(notification(id, 2))
    hub.handleNotification(notification(id, 3))
    hub.handleNotification(notification(id, 1))
    await settle()
    expect(db.reads).toHaveLength(1)
    // A read that returns an older row than the hub holds (e.g. a subscriber's seed that
    // raced a newer batch, or a lagging replica) moves nothing backward.
    expect(hub.seed(id, { doc: doc(id, 2), tenantId: TENANT, ownerId: 'alice' }).version).toBe(3)
    db.set(doc(id, 2))
    hub.handleNotification(notification(id, 4))
    await settle()
    db.set(doc(id, 5))
    hub.handleNotification(notification(id, 5))
    hub.handleNotification(notification(id, 5))
    await settle()
    expect(w.versions).toEqual([3, 5])
  })

  it('reserves the job before the authorising read, so a change during it is not lost', async () => {
    const id = jobId(1)
    const pending = hub.reserve(id)
    // The RLS read has not returned yet; a change commits and is announced meanwhile.
    db.set(doc(id, 2))
    hub.handleNotification(notification(id, 2))
    await settle()
    expect(pending.state.current?.version).toBe(2)
    // The authorising read returns the older row; the stream starts from the newer one.
    expect(hub.seed(id, { doc: doc(id, 1), tenantId: TENANT, ownerId: 'alice' }).version).toBe(2)
    expect(pending.state.current?.version).toBe(2)
  })

  it('gives a change during the authorising read to nobody: only an attached watcher hears', async () => {
    const id = jobId(1)
    const pending = hub.reserve(id)
    const w = new RecordingWatcher()
    w.isOpen = true
    db.set(doc(id, 2))
    hub.handleNotification(notification(id, 2))
    await settle()
    // Whatever the caller's transport is, it is not in the hub yet: the change reached no one.
    expect(hub.watcherCount).toBe(0)
    expect(w.versions).toEqual([])
    // The authorisation fails: the reservation goes, and nothing was ever handed out.
    pending.cancel()
    expect(hub.watchedJobs).toBe(0)
    db.set(doc(id, 3))
    hub.handleNotification(notification(id, 3))
    await settle()
    expect(w.versions).toEqual([])
    expect(() => pending.attach(w)).toThrow(/already attached or cancelled/)
  })

  it('keeps a reserved job watched while another caller leaves it', async () => {
    const id = jobId(1)
    db.set(doc(id, 1))
    const first = watch(id)
    const pending = hub.reserve(id)
    first.close()
    expect(hub.watchedJobs).toBe(1)
    db.set(doc(id, 2))
    hub.handleNotification(notification(id, 2))
    await settle()
    const w = new RecordingWatcher()
    w.isOpen = true
    const handle = pending.attach(w)
    expect(handle.state.current?.version).toBe(2)
    db.set(doc(id, 3))
    hub.handleNotification(notification(id, 3))
    await settle()
    expect(w.versions).toEqual([3])
    handle.close()
    expect(hub.watchedJobs).toBe(0)
  })

  it('computes one patch per base version and shares it with every watcher on that base', async () => {
    const id = jobId(1)
    db.set(doc(id, 1))
    const patches: unknown[] = []
    const frames: unknown[] = []
    let builds = 0
    let isOpen = false
    const watcher = (): Watcher => ({
      onChange(change) {
        if (!isOpen) return
        patches.push(change.state.patchFrom(change.previous!.version))
        frames.push(
          change.memoize(`sse:patch:${change.previous!.version}`, () => {
            builds++
            return Buffer.from(JSON.stringify(change.state.patchFrom(change.previous!.version)))
          }),
        )
      },
      onGone: () => undefined,
    })
    for (let i = 0; i < 100; i++) watch(id, watcher())
    isOpen = true
    db.set(doc(id, 2, { progress: 50 }))
    hub.handleNotification(notification(id, 2))
    await settle()
    expect(patches).toHaveLength(100)
    expect(new Set(patches).size).toBe(1)
    expect(new Set(frames).size).toBe(1)
    expect(builds).toBe(1)
    expect(patches[0]).toEqual([
      { op: 'test', path: '/version', value: 1 },
      { op: 'replace', path: '/version', value: 2 },
      { op: 'replace', path: '/step', value: 'step 2' },
      { op: 'replace', path: '/progress', value: 50 },
    ])
  })

  it('keeps a patch per distinct base, and a new version starts a new set', async () => {
    const id = jobId(1)
    db.set(doc(id, 1))
    const handle = watch(id)
    for (const v of [2, 3]) {
      db.set(doc(id, v))
      hub.handleNotification(notification(id, v))
      await settle()
    }
    const state = handle.state
    expect(state.patchFrom(1)).toBe(state.patchFrom(1))
    expect(state.patchFrom(2)).toBe(state.patchFrom(2))
    expect(state.patchFrom(1)).not.toBe(state.patchFrom(2))
    expect(state.patchFrom(3)).toBeUndefined() // no patch from the current version to itself
    const before = state.patchFrom(2)
    db.set(doc(id, 4))
    hub.handleNotification(notification(id, 4))
    await settle()
    expect(state.patchFrom(2)).not.toBe(before)
    expect(state.patchFrom(2)?.[0]).toEqual({ op: 'test', path: '/version', value: 2 })
  })

  it('forgets bases older than the kept history', async () => {
    hub = newHub({ historySize: 2 })
    const id = jobId(1)
    db.set(doc(id, 1))
    const handle = watch(id)
    for (const v of [2, 3, 4, 5]) {
      db.set(doc(id, v))
      hub.handleNotification(notification(id, v))
      await settle()
    }
    expect(handle.state.patchFrom(1)).toBeUndefined()
    expect(handle.state.patchFrom(3)).toBeUndefined()
    expect(handle.state.patchFrom(4)?.[0]).toEqual({ op: 'test', path: '/version', value: 4 })
  })

  it('keeps the history of a job nobody watches any more, for a client that resumes', async () => {
    const id = jobId(1)
    db.set(doc(id, 1))
    const first = watch(id)
    first.close()
    expect(hub.watchedJobs).toBe(0)
    db.set(doc(id, 4))
    const again = watch(id)
    expect(again.state.patchFrom(1)?.[0]).toEqual({ op: 'test', path: '/version', value: 1 })
    again.close()
  })

  it('counts malformed payloads and carries on', async () => {
    const id = jobId(1)
    db.set(doc(id, 1))
    const w = new RecordingWatcher()
    watch(id, w)
    for (const bad of [undefined, '', 'nope', '{}', '[]', 'null', '{"id":"x","version":2}'])
      expect(() => hub.handlePayload(bad)).not.toThrow()
    expect(hub.stats.malformed).toBe(7)
    db.set(doc(id, 2))
    hub.handlePayload(payload(notification(id, 2)))
    await settle()
    expect(w.versions).toEqual([2])
  })

  it('tells watchers when the job was deleted', async () => {
    const id = jobId(1)
    db.set(doc(id, 1))
    const w = new RecordingWatcher()
    watch(id, w)
    db.rows.delete(id)
    hub.handleNotification(notification(id, 1, 'deleted'))
    await settle()
    expect(w.gone).toEqual([id])
  })

  it('re-reads every watched job in one query after a reconnect, and the sweep skips terminal jobs', async () => {
    for (const n of [1, 2, 3]) {
      db.set(doc(jobId(n), 1, n === 3 ? { status: 'completed' } : {}))
      watch(jobId(n))
    }
    expect(hub.refreshWatched({ includeTerminal: true })).toBe(3)
    await settle()
    expect(db.reads).toEqual([[jobId(1), jobId(2), jobId(3)]])
    expect(hub.refreshWatched({ includeTerminal: false })).toBe(2)
    await settle()
    expect(db.reads[1]).toEqual([jobId(1), jobId(2)])
  })

  it('delivers a change missed while the listener was away once it reconnects', async () => {
    const id = jobId(1)
    db.set(doc(id, 1))
    const w = new RecordingWatcher()
    watch(id, w)
    db.set(doc(id, 2)) // committed, but its notification was lost
    hub.refreshWatched({ includeTerminal: true })
    await settle()
    expect(w.versions).toEqual([2])
  })

  describe('when a read fails', () => {
    beforeEach(() => jest.useFakeTimers())
    afterEach(() => jest.useRealTimers())

    it('retries after a pause, not in a tight loop, and then delivers', async () => {
      hub = newHub()
      const id = jobId(1)
      db.set(doc(id, 1))
      const w = new RecordingWatcher()
      watch(id, w)
      db.set(doc(id, 2))
      db.failuresLeft = 1_000_000 // the database is down
      hub.handleNotification(notification(id, 2))
      await jest.advanceTimersByTimeAsync(10)
      expect(db.reads).toHaveLength(1)
      expect(hub.stats.fetchErrors).toBe(1)
      await jest.advanceTimersByTimeAsync(500)
      expect(db.reads).toHaveLength(1)
      await jest.advanceTimersByTimeAsync(600)
      expect(db.reads).toHaveLength(2)
      db.failuresLeft = 0 // back up
      await jest.advanceTimersByTimeAsync(1_100)
      expect(db.reads).toHaveLength(3)
      expect(w.versions).toEqual([2])
      // Nothing left to read: the retry timer does not keep reading.
      await jest.advanceTimersByTimeAsync(5_000)
      expect(db.reads).toHaveLength(3)
    })
  })

  it('frees a job when its last watcher leaves', () => {
    const id = jobId(1)
    db.set(doc(id, 1))
    const a = watch(id)
    const b = watch(id)
    expect(hub.watchedJobs).toBe(1)
    expect(hub.watcherCount).toBe(2)
    a.close()
    a.close()
    expect(hub.watcherCount).toBe(1)
    b.close()
    expect(hub.watchedJobs).toBe(0)
    expect(hub.watcherCount).toBe(0)
  })
})

describe('feeds', () => {
  it('delivers every job of a burst larger than the retained cache', async () => {
    hub = new Hub({
      fetchJobs: db.fetchJobs,
      logger,
      historySize: 4,
      batchMaxIds: 500,
      batchWindowMs: 0,
      retainedMax: 3,
    })
    const seen: string[] = []
    hub.watchFeed(TENANT, { ownerId: undefined, onChange: (change) => seen.push(change.doc.id) })
    // Ten new jobs nobody watches one by one: their states outnumber the retained cache
    // before the batch is read; each must still be read and delivered.
    for (let n = 1; n <= 10; n++) {
      db.set(doc(jobId(n), 1, { status: 'queued' }))
      hub.handleNotification(notification(jobId(n), 1, 'queued'))
    }
    await settle()
    expect(db.reads).toHaveLength(1)
    expect(seen.sort()).toEqual(Array.from({ length: 10 }, (_, i) => jobId(i + 1)).sort())
  })

  it('applies a catch-up read to the feeds that may see the jobs, and to nobody else', () => {
    const seen: string[] = []
    hub.watchFeed(TENANT, { ownerId: 'alice', onChange: (change) => seen.push(change.doc.id) })
    hub.catchUp([
      { doc: doc(jobId(1), 3), tenantId: TENANT, ownerId: 'alice' },
      { doc: doc(jobId(2), 1), tenantId: TENANT, ownerId: 'bob' },
      { doc: doc(jobId(3), 1), tenantId: '11111111-1111-4111-8111-111111111111', ownerId: 'alice' },
    ])
    expect(seen).toEqual([jobId(1)])
    expect(hub.feedTenants()).toEqual([TENANT])
  })

  it('stops reading after stop(), even when a read fails', async () => {
    watch(db.set(doc(jobId(1), 1)).id)
    db.failuresLeft = 1
    hub.handleNotification(notification(jobId(1), 2))
    await settle()
    hub.stop()
    const reads = db.reads.length
    jest.useFakeTimers()
    try {
      jest.advanceTimersByTime(5000)
    } finally {
      jest.useRealTimers()
    }
    await settle()
    expect(db.reads).toHaveLength(reads)
  })
})

describe('handleRow (rows the replication stream carries whole)', () => {
  const row = (d: JobDocument, ownerId = 'alice'): FetchedJob => ({
    doc: d,
    tenantId: TENANT,
    ownerId,
  })

  it('applies a watched row without a read, in order, never going back', async () => {
    const id = jobId(1)
    db.set(doc(id, 1))
    const w = new RecordingWatcher()
    watch(id, w)
    for (const v of [2, 3, 3, 2, 4]) hub.handleRow(id, row(doc(id, v)))
    await settle()
    expect(w.versions).toEqual([2, 3, 4])
    expect(db.reads).toEqual([])
    expect(hub.stats).toMatchObject({ notifications: 5, changes: 4, fetches: 0 }) // the seed, then 2, 3, 4
  })

  it('costs a map lookup and nothing else for a job nobody watches', async () => {
    hub.handleRow(jobId(1), row(doc(jobId(1), 2)))
    hub.handleRow(jobId(2), undefined)
    await settle()
    expect(db.reads).toEqual([])
    expect(hub.stats).toMatchObject({ notifications: 2, unwatched: 2, changes: 0 })
  })

  it('routes to the feeds that may see the job, as a notification would', () => {
    const admin: string[] = []
    const alice: string[] = []
    hub.watchFeed(TENANT, { ownerId: undefined, onChange: (c) => admin.push(c.doc.id) })
    hub.watchFeed(TENANT, { ownerId: 'alice', onChange: (c) => alice.push(c.doc.id) })
    hub.handleRow(jobId(1), row(doc(jobId(1), 1), 'alice'))
    hub.handleRow(jobId(2), row(doc(jobId(2), 1), 'bob'))
    hub.handleRow(jobId(3), {
      doc: doc(jobId(3), 1),
      tenantId: '11111111-1111-4111-8111-111111111111',
      ownerId: 'alice',
    })
    expect(admin).toEqual([jobId(1), jobId(2)])
    expect(alice).toEqual([jobId(1)])
    expect(db.reads).toEqual([])
  })

  it('keeps a fed job among the retained states, so a client resuming it gets one patch', () => {
    hub.watchFeed(TENANT, { ownerId: undefined, onChange: () => undefined })
    const id = jobId(1)
    hub.handleRow(id, row(doc(id, 1)))
    hub.handleRow(id, row(doc(id, 2)))
    const handle = hub.reserve(id).attach(new RecordingWatcher())
    expect(handle.state.version).toBe(2)
    expect(handle.state.patchFrom(1)).toBeDefined()
  })

  it('tells watchers when the row was deleted, with no read', async () => {
    const id = jobId(1)
    db.set(doc(id, 1))
    const w = new RecordingWatcher()
    watch(id, w)
    hub.handleRow(id, undefined)
    await settle()
    expect(w.gone).toEqual([id])
    expect(db.reads).toEqual([])
  })

  it('reports the commit-to-hub latency of the newest version', () => {
    const latencies: number[] = []
    hub = new Hub({
      fetchJobs: db.fetchJobs,
      logger,
      historySize: 4,
      batchMaxIds: 500,
      batchWindowMs: 0,
      onLatency: (ms) => latencies.push(ms),
    })
    const id = jobId(1)
    db.set(doc(id, 1))
    watch(id)
    hub.handleRow(id, row(doc(id, 2)), { ts: Date.now() - 5 })
    hub.handleRow(id, row(doc(id, 2)), { ts: Date.now() - 5 })
    expect(latencies).toHaveLength(1)
    expect(latencies[0]).toBeGreaterThanOrEqual(5)
  })

  it('a read in flight that returns an older row does not undo it', async () => {
    const id = jobId(1)
    db.set(doc(id, 1))
    const w = new RecordingWatcher()
    watch(id, w)
    let open!: () => void
    db.gate = new Promise((resolve) => (open = resolve))
    db.set(doc(id, 2))
    hub.handleNotification(notification(id, 2))
    await settle()
    hub.handleRow(id, row(doc(id, 3)))
    db.gate = undefined
    open()
    await settle()
    expect(w.versions).toEqual([3])
  })
})

describe('changes built from the notification', () => {
  /** The notification the trigger sends for `d` when the change is small. */
  function small(d: JobDocument): JobNotification {
    return {
      ...notification(d.id, d.version, d.status),
      small: {
        type: null,
        progress: d.progress,
        step: d.step,
        eta_seconds: d.eta_seconds,
        attempts: d.attempts,
        max_attempts: d.max_attempts,
        cancel_requested: d.cancel_requested,
        created_at: d.created_at,
        updated_at: d.updated_at,
        started_at: d.started_at,
        completed_at: d.completed_at,
      },
    }
  }

  it('delivers a small change on top of the version it has, with no read', async () => {
    const id = jobId(1)
    db.set(doc(id, 1))
    const w = new RecordingWatcher()
    watch(id, w)
    hub.handleNotification(small(doc(id, 2, { progress: 40 })))
    hub.handleNotification(small(doc(id, 3, { progress: 41 })))
    expect(w.versions).toEqual([2, 3])
    expect(w.changes.at(-1)?.doc.progress).toBe(41)
    await settle()
    expect(db.reads).toEqual([])
    expect(hub.stats.built).toBe(2)
  })

  it('builds the small changes that arrived during a read on what the read returns', async () => {
    const id = jobId(1)
    db.set(doc(id, 1))
    const w = new RecordingWatcher()
    watch(id, w)
    let open!: () => void
    db.gate = new Promise((resolve) => (open = resolve))
    // Version 2 carries a result: it must be read. 3 and 4 arrive meanwhile.
    db.set(doc(id, 2, { step: 'read' }))
    hub.handleNotification(notification(id, 2))
    await settle()
    hub.handleNotification(small(doc(id, 3, { step: 'read', progress: 60 })))
    hub.handleNotification(small(doc(id, 4, { step: 'read', progress: 70 })))
    expect(w.versions).toEqual([])
    db.gate = undefined
    open()
    await settle()
    expect(w.versions).toEqual([2, 3, 4])
    expect(w.changes.map((c) => c.doc.progress)).toEqual([2, 60, 70])
    expect(db.reads).toHaveLength(1)
  })

  it('reads when the version before it is missing, and drops what the read overtook', async () => {
    const id = jobId(1)
    db.set(doc(id, 1))
    const w = new RecordingWatcher()
    watch(id, w)
    db.set(doc(id, 4))
    hub.handleNotification(small(doc(id, 3)))
    hub.handleNotification(small(doc(id, 4)))
    await settle()
    expect(w.versions).toEqual([4])
    expect(db.reads).toHaveLength(1)
  })
})
