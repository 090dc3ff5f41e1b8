// Owns who watches which job (and which tenant feed) in this process, and turns
// notifications into job changes. Promises:
//   * a notification for a job nobody watches costs one map lookup, no query;
//   * a change whose notification carries its small fields, on top of the version the hub
//     has, is built without a read and delivered at once: every such version reaches the
//     watchers (docs/decisions.md, "Changes built from the notification");
//   * other notifications arriving together are read in one batched query (one in flight at
//     a time; whatever arrives meanwhile forms the next batch);
//   * each new document is built once and each patch computed once per base version;
//   * versions only move forward: an old or repeated notification never emits an event;
//   * nothing is lost: after a listener reconnect and on a slow safety sweep, watched jobs
//     are re-read, and a failed read is retried;
//   * nothing reaches a caller before its authorisation: a watch opened before the
//     authorising read is a reservation without a watcher (reserve()); the transport joins
//     with attach() only after the read allowed it;
//   * a whole row from the replication stream (handleRow) is applied as the read of a
//     notification would be, without the read.
import type { JobDocument } from '../protocol/job.js'
import { isTerminalStatus } from '../protocol/job.js'
import type { Logger } from '../telemetry/logger.js'
import { JobChange, JobState, type Watcher } from './job-state.js'
import { parseNotification, type JobNotification } from './notification.js'
import { documentFromNotification } from './small-change.js'

export { JobChange, JobState, type Watcher }

export interface FetchedJob {
  doc: JobDocument
  tenantId: string
  ownerId: string | null
}

/** A tenant-feed subscriber: sees every job of the tenant it may see, as it changes. */
export interface FeedWatcher {
  /** undefined: an admin, sees the whole tenant; otherwise only jobs with this owner_id. */
  readonly ownerId: string | undefined
  onChange(change: JobChange): void
  /** A job it may see was deleted; `version` is the last one the hub had. */
  onGone?(jobId: string, version: number): void
}

export interface HubOptions {
  fetchJobs(ids: string[]): Promise<FetchedJob[]>
  logger: Logger
  historySize: number
  batchMaxIds: number
  /** Extra wait before a batch is read (0: next tick). */
  batchWindowMs: number
  /** Unwatched jobs whose history is kept for resuming clients. */
  retainedMax?: number
  onLatency?(ms: number): void
}

export interface WatchHandle {
  readonly state: JobState
  close(): void
}

/**
 * A watch opened before its authorising read. It keeps the job's state live — notifications
 * for the job are read and applied, so a change committed during the read is not lost — but
 * it has no watcher: nothing can reach the caller until the authorisation succeeded and the
 * transport attach()es itself, in the same synchronous step in which it reads `state.current`.
 */
export interface PendingWatch {
  readonly state: JobState
  /** Joins the watcher; from now on it gets every newer version. Callable once. */
  attach(watcher: Watcher): WatchHandle
  /** The authorisation failed, or the caller left before attaching: forget the reservation. */
  cancel(): void
}

export class HubStats {
  notifications = 0
  malformed = 0
  unwatched = 0
  fetches = 0
  fetchedRows = 0
  fetchErrors = 0
  /** Total time spent in batched reads (ms). */
  fetchMs = 0
  changes = 0
  /** Changes built from the notification's small fields, without a read. */
  built = 0
}

const FETCH_RETRY_MS = 1000
/** Small-field notifications a job keeps while the version before them is read. */
const MAX_PENDING_SMALL = 64

export class Hub {
  readonly stats = new HubStats()
  private readonly jobs = new Map<string, JobState>()
  private readonly retained = new Map<string, JobState>()
  private readonly feeds = new Map<string, Set<FeedWatcher>>()
  /** Watchers of every job of every tenant (the Redis bridge's outbound direction). */
  private readonly everything = new Set<FeedWatcher>()
  /**
   * Jobs to read, with their state (so that a state the retained LRU evicts meanwhile is
   * still read and delivered) and whether to read even if no newer version was announced.
   */
  private readonly queue = new Map<string, { state: JobState; forced: boolean }>()
  private isStopped = false
  private isFetching = false
  private isScheduled = false
  private retryTimer: NodeJS.Timeout | undefined
  private sweepTimer: NodeJS.Timeout | undefined
  private readonly retainedMax: number

  constructor(private readonly options: HubOptions) {
    this.retainedMax = options.retainedMax ?? 1000
  }

  /** Number of jobs with at least one watcher. */
  get watchedJobs(): number {
    return this.jobs.size
  }

  get watcherCount(): number {
    let n = 0
    for (const state of this.jobs.values()) n += state.watchers.size
    return n
  }

  get feedCount(): number {
    let n = 0
    for (const set of this.feeds.values()) n += set.size
    return n
  }

  /**
   * Reserves a job before the authorising read. src/http/subscribe.ts reads, seed()s and
   * hands the reservation to the transport, which attach()es itself: only an attached watcher
   * ever receives changes.
   */
  reserve(jobId: string): PendingWatch {
    const state = this.live(jobId)
    state.reservations++
    let isSettled = false
    const settle = () => {
      if (isSettled) throw new Error(`the watch on job ${jobId} was already attached or cancelled`)
      isSettled = true
      state.reservations--
    }
    return {
      state,
      attach: (watcher) => {
        settle()
        state.watchers.add(watcher)
        let isClosed = false
        return {
          state,
          close: () => {
            if (isClosed) return
            isClosed = true
            state.watchers.delete(watcher)
            this.release(state)
          },
        }
      },
      cancel: () => {
        if (isSettled) return
        settle()
        this.release(state)
      },
    }
  }

  /** Applies a document read elsewhere (the subscriber's RLS read). Returns the newest. */
  seed(jobId: string, fetched: FetchedJob): JobDocument {
    const state = this.jobs.get(jobId) ?? this.retained.get(jobId)
    if (!state) return fetched.doc
    this.apply(state, fetched)
    return state.current!
  }

  watchFeed(tenantId: string, watcher: FeedWatcher): () => void {
    let set = this.feeds.get(tenantId)
    if (!set) this.feeds.set(tenantId, (set = new Set()))
    set.add(watcher)
    return () => {
      set.delete(watcher)
      if (set.size === 0 && this.feeds.get(tenantId) === set) this.feeds.delete(tenantId)
    }
  }

  /** Watches every change of every job (costs one batched read per change burst). */
  watchAll(watcher: FeedWatcher): () => void {
    this.everything.add(watcher)
    return () => this.everything.delete(watcher)
  }

  /** The listener's callback: parses and routes one NOTIFY payload. */
  handlePayload(payload: string | undefined): void {
    const notification = parseNotification(payload)
    if (!notification) {
      this.stats.malformed++
      this.options.logger.warn(
        { payload: payload?.slice(0, 200) },
        'malformed job notification ignored',
      )
      return
    }
    this.handleNotification(notification)
  }

  handleNotification(n: JobNotification): void {
    this.stats.notifications++
    let state = this.jobs.get(n.id)
    if (!state) {
      if (!this.feedWants(n.tenantId, n.ownerId)) {
        this.stats.unwatched++
        return
      }
      state = this.retained.get(n.id) ?? new JobState(n.id, this.options.historySize)
      // Kept among the retained states so that the batch read finds it.
      this.retain(state, true)
    }
    state.tenantId = n.tenantId
    state.ownerId = n.ownerId
    if (n.version <= state.version && n.status !== 'deleted') return
    if (n.version > state.notifiedVersion) {
      state.notifiedVersion = n.version
      state.notifiedTs = n.ts
    }
    // The change's small fields and the version just before it: no read, delivered now.
    const doc = documentFromNotification(n, state.current)
    if (doc) {
      this.stats.built++
      this.apply(state, { doc, tenantId: n.tenantId, ownerId: n.ownerId })
      return
    }
    // The version before it is still to be read: build this one on top once the read lands,
    // so that only versions committed before that read executes are merged into it.
    if (n.small && state.pendingSmall.length < MAX_PENDING_SMALL) state.pendingSmall.push(n)
    this.enqueue(state, n.status === 'deleted')
  }

  /**
   * Applies a whole row that the event source already has (logical replication), with no
   * read: the same routing as a notification followed by its read. An unwatched job nobody's
   * feed wants costs a map lookup; versions only move forward. `fetched` undefined: the row
   * was deleted, and the job's watchers are told it is gone.
   * `ts`: the commit time (epoch ms), for the latency metric.
   */
  handleRow(jobId: string, fetched: FetchedJob | undefined, options: { ts?: number } = {}): void {
    this.stats.notifications++
    if (!fetched) {
      if (!this.jobs.has(jobId) && !this.retained.has(jobId)) this.stats.unwatched++
      return this.gone(jobId)
    }
    let state = this.jobs.get(jobId)
    if (!state) {
      if (!this.feedWants(fetched.tenantId, fetched.ownerId)) {
        this.stats.unwatched++
        return
      }
      state = this.retained.get(jobId) ?? new JobState(jobId, this.options.historySize)
      this.retain(state, true)
    }
    if (fetched.doc.version > state.notifiedVersion) {
      state.notifiedVersion = fetched.doc.version
      state.notifiedTs = options.ts
    }
    this.apply(state, fetched)
  }

  /** Re-reads watched jobs: after a listener reconnect (all) and on the safety sweep (non-terminal). */
  refreshWatched(options: { includeTerminal: boolean }): number {
    let n = 0
    for (const state of this.jobs.values()) {
      if (!options.includeTerminal && state.current && isTerminalStatus(state.current.status))
        continue
      this.enqueue(state, true)
      n++
    }
    return n
  }

  startSweep(intervalMs: number): void {
    if (intervalMs <= 0) return
    this.sweepTimer = setInterval(() => this.refreshWatched({ includeTerminal: false }), intervalMs)
    this.sweepTimer.unref()
  }

  /**
   * After a listener outage, feeds (and watchAll) may have missed jobs nobody watched one by
   * one, including jobs created during the gap: apply what a catch-up read found.
   */
  catchUp(rows: readonly FetchedJob[]): void {
    for (const row of rows) {
      let state = this.jobs.get(row.doc.id) ?? this.retained.get(row.doc.id)
      if (!state) {
        if (!this.feedWants(row.tenantId, row.ownerId)) continue
        state = new JobState(row.doc.id, this.options.historySize)
        this.retain(state, true)
      }
      this.apply(state, row)
    }
  }

  /** Tenants with an open feed, or 'all' when something watches every job (the bridge). */
  feedTenants(): string[] | 'all' {
    return this.everything.size > 0 ? 'all' : [...this.feeds.keys()]
  }

  stop(): void {
    this.isStopped = true
    clearInterval(this.sweepTimer)
    clearTimeout(this.retryTimer)
    this.queue.clear()
  }

  /** The job's state among the watched ones, taken from the retained LRU or made. */
  private live(jobId: string): JobState {
    let state = this.jobs.get(jobId)
    if (!state) {
      state = this.retained.get(jobId) ?? new JobState(jobId, this.options.historySize)
      this.retained.delete(jobId)
      this.jobs.set(jobId, state)
    }
    return state
  }

  /** A watcher or a reservation left: with neither left the state moves to the retained LRU. */
  private release(state: JobState): void {
    if (state.watchers.size > 0 || state.reservations > 0) return
    if (this.jobs.get(state.id) !== state) return
    this.jobs.delete(state.id)
    this.retain(state)
  }

  private feedWants(tenantId: string, ownerId: string | null): boolean {
    if (this.everything.size > 0) return true
    const set = this.feeds.get(tenantId)
    if (!set) return false
    for (const feed of set) if (feed.ownerId === undefined || feed.ownerId === ownerId) return true
    return false
  }

  private retain(state: JobState, evenWithoutDocument = false): void {
    if (this.retainedMax <= 0 || (!state.current && !evenWithoutDocument)) return
    this.retained.delete(state.id)
    this.retained.set(state.id, state)
    if (this.retained.size > this.retainedMax)
      this.retained.delete(this.retained.keys().next().value!)
  }

  private enqueue(state: JobState, forced: boolean): void {
    const queued = this.queue.get(state.id)
    this.queue.set(state.id, { state, forced: forced || (queued?.forced ?? false) })
    this.schedule()
  }

  private schedule(): void {
    if (this.isStopped || this.isScheduled || this.isFetching || this.queue.size === 0) return
    this.isScheduled = true
    const run = () => {
      this.isScheduled = false
      void this.flush()
    }
    if (this.options.batchWindowMs > 0) setTimeout(run, this.options.batchWindowMs)
    else setImmediate(run)
  }

  private async flush(): Promise<void> {
    if (this.isFetching) return
    const batch = new Map<string, JobState>()
    for (const [id, { state, forced }] of this.queue) {
      if (batch.size >= this.options.batchMaxIds) break
      this.queue.delete(id)
      // Already caught up with what was announced (an earlier batch read a newer row).
      if (!forced && state.version >= state.notifiedVersion) continue
      batch.set(id, state)
    }
    const ids = [...batch.keys()]
    if (ids.length === 0) return this.schedule()
    this.isFetching = true
    this.stats.fetches++
    const startedAt = performance.now()
    try {
      const rows = await this.options.fetchJobs(ids)
      this.stats.fetchedRows += rows.length
      const found = new Set<string>()
      for (const row of rows) {
        found.add(row.doc.id)
        // The live state if the job is (again) watched or retained, else the queued one.
        const state =
          this.jobs.get(row.doc.id) ?? this.retained.get(row.doc.id) ?? batch.get(row.doc.id)
        if (state) this.apply(state, row)
      }
      for (const id of ids) if (!found.has(id)) this.gone(id, batch.get(id))
    } catch (error) {
      this.stats.fetchErrors++
      this.options.logger.warn(
        { err: error, ids: ids.length },
        'reading changed jobs failed; retrying',
      )
      if (this.isStopped) return
      for (const [id, state] of batch) this.queue.set(id, { state, forced: true })
      clearTimeout(this.retryTimer)
      this.retryTimer = setTimeout(() => this.schedule(), FETCH_RETRY_MS)
      this.retryTimer.unref()
      // The retry timer (or a new notification) starts the next attempt: scheduling now
      // would retry at once, in a tight loop of failing queries while the database is down.
      return
    } finally {
      this.stats.fetchMs += performance.now() - startedAt
      this.isFetching = false
    }
    this.schedule()
  }

  /** Delivers a newer document, then whatever pending notification now builds on it. */
  private apply(state: JobState, fetched: FetchedJob): void {
    if (!this.deliver(state, fetched)) return
    const pending = state.pendingSmall
    while (pending.length > 0) {
      const n = pending[0]!
      if (n.version <= state.version) {
        pending.shift()
        continue
      }
      const doc = documentFromNotification(n, state.current)
      if (!doc) break
      pending.shift()
      this.stats.built++
      this.deliver(state, { doc, tenantId: n.tenantId, ownerId: n.ownerId })
    }
  }

  /** Moves the job to a newer document and hands the change to every watcher. */
  private deliver(state: JobState, fetched: FetchedJob): boolean {
    state.tenantId = fetched.tenantId
    state.ownerId = fetched.ownerId
    const previous = state.current
    if (!state.advance(fetched.doc)) return false
    this.stats.changes++
    if (state.notifiedTs !== undefined && state.notifiedVersion <= fetched.doc.version) {
      this.options.onLatency?.(Date.now() - state.notifiedTs)
      state.notifiedTs = undefined
    }
    const change = new JobChange(state, fetched.doc, previous)
    for (const watcher of state.watchers) watcher.onChange(change)
    for (const watcher of this.everything) watcher.onChange(change)
    const feeds = this.feeds.get(fetched.tenantId)
    if (feeds) {
      for (const feed of feeds)
        if (feed.ownerId === undefined || feed.ownerId === fetched.ownerId) feed.onChange(change)
    }
    return true
  }

  /**
   * The job was deleted: its watchers, the feeds that may see it and watchAll() are told (a
   * feed only when the hub knows the job's tenant: from its notification, or a read).
   */
  private gone(id: string, queued?: JobState): void {
    const watched = this.jobs.get(id)
    const state = watched ?? this.retained.get(id) ?? queued
    this.retained.delete(id)
    if (!state) return
    const version = state.version
    for (const watcher of this.everything) watcher.onGone?.(id, version)
    // Feeds before the job's own watchers: a connection with both (a WebSocket subscribed to
    // the job and to the feed) leaves it to the subscription, which is still there.
    const feeds = state.tenantId === undefined ? undefined : this.feeds.get(state.tenantId)
    for (const feed of feeds ?? [])
      if (feed.ownerId === undefined || feed.ownerId === state.ownerId) feed.onGone?.(id, version)
    if (watched) for (const watcher of watched.watchers) watcher.onGone(id)
  }
}
