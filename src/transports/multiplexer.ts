// Many jobs over one connection (WebSocket, or SSE on /v1/events): owns the connection's
// job subscriptions and its tenant-feed subscription, what the client has of each job, and
// backpressure. Transport-neutral: a sink encodes messages (once per change and base
// version, shared by every connection with that encoding) and writes bytes.
// Promises, per job: snapshot first (or one patch on resume), then patches that test the
// base version, then `end` once terminal, after which the job is dropped; while the socket
// is congested nothing is queued: each dirty job (subscribed, or seen on the feed) gets one
// merged message when it drains.
import { isTerminalStatus, type JobDocument } from '../protocol/job.js'
import type {
  FeedWatcher,
  JobChange,
  JobState,
  PendingWatch,
  Watcher,
  WatchHandle,
} from '../events/hub.js'
import { diffDocuments, type Operation } from '../events/patch.js'
import { deletedMessage, type JobStreamMessage } from '../protocol/stream-messages.js'

/** The most feed-delivered documents one connection remembers (see rememberFeed()). */
export const FEED_MEMORY_MAX_JOBS = 10_000

export type MuxMessage = JobStreamMessage<Operation>

export interface MuxSink {
  /**
   * Memo key prefix: sinks with the same encoding share encoded bytes. Must differ from every
   * other cache user of a JobChange (the single-job SSE stream uses `sse:<format>`).
   */
  readonly encoding: 'sse-mux' | 'ws'
  encode(message: MuxMessage): Buffer
  /** Writes one message's bytes; `job` and `version` let SSE add its resume id. */
  write(bytes: Buffer, job?: string, version?: number): void
  isCongested(): boolean
  /**
   * Keep the final version of every job that ended, for positions(): only a sink whose
   * resume id names ended jobs (SSE `j.`) needs them; on a long-lived WebSocket they would
   * pile up, one per finished job.
   */
  readonly needsPositions: boolean
  /** Called when the last job subscription ended and no feed is open. */
  onIdle?(): void
}

export class JobSubscription implements Watcher {
  handle: WatchHandle | undefined
  delivered: JobDocument | undefined
  isDirty = false
  /** Unsubscribed while its authorising read was in flight: start() only closes it. */
  isCancelled = false
  constructor(
    readonly jobId: string,
    private readonly mux: Multiplexer,
  ) {}
  onChange(change: JobChange): void {
    this.mux.deliver(this, change.state, change)
  }
  onGone(jobId: string): void {
    this.mux.gone(jobId)
  }
}

export class Multiplexer implements FeedWatcher {
  private readonly jobs = new Map<string, JobSubscription>()
  /** Jobs between prepare() and start(): the feed leaves them to their own subscription. */
  private readonly pending = new Map<string, JobSubscription>()
  private unwatchFeed: (() => void) | undefined
  /**
   * What the feed delivered of jobs that are not individually subscribed, least recently
   * delivered first; at most FEED_MEMORY_MAX_JOBS (see rememberFeed()).
   */
  private readonly feedDelivered = new Map<string, JobDocument>()
  /** Feed jobs that changed while the sink was congested: the newest document of each. */
  private readonly feedDirty = new Map<string, JobDocument>()
  /**
   * Final versions of jobs that ended here, when the sink needsPositions: resume ids keep
   * them (so a reconnect can 204).
   */
  private readonly ended = new Map<string, number>()
  private isClosed = false

  constructor(
    private readonly sink: MuxSink,
    /** Feed visibility: undefined for admins, the owner for members. */
    readonly ownerId: string | undefined,
  ) {}

  get size(): number {
    return this.jobs.size
  }

  get hasFeed(): boolean {
    return this.unwatchFeed !== undefined
  }

  /** Jobs subscribed or being subscribed: a per-connection cap counts both. */
  get reserved(): number {
    return this.jobs.size + this.pending.size
  }

  /** Subscribed, or between prepare() and start()/abandon(). */
  has(jobId: string): boolean {
    return this.jobs.has(jobId) || this.pending.has(jobId)
  }

  /** Positions of every job the client holds (for SSE resume ids). */
  positions(): Map<string, number> {
    const out = new Map<string, number>(this.ended)
    for (const [id, sub] of this.jobs) if (sub.delivered) out.set(id, sub.delivered.version)
    return out
  }

  /**
   * Marks a job as being subscribed while its authorising read runs (the feed leaves it to
   * its own subscription, unsubscribe() cancels it); start() or abandon() settles it.
   */
  prepare(jobId: string): JobSubscription {
    const sub = new JobSubscription(jobId, this)
    this.pending.set(jobId, sub)
    return sub
  }

  /**
   * Starts a job after its authorising read: attaches to the authorised watch and sends a
   * snapshot, one resume patch, or nothing. A job unsubscribed meanwhile, one already
   * subscribed, or a closed connection only cancels the watch.
   */
  start(sub: JobSubscription, watch: PendingWatch, resumeFrom: number | undefined): void {
    this.forgetPending(sub)
    if (this.isClosed || sub.isCancelled || this.jobs.has(sub.jobId)) return watch.cancel()
    const handle = watch.attach(sub)
    sub.handle = handle
    this.jobs.set(sub.jobId, sub)
    const state = handle.state
    const doc = state.current!
    // The feed may already have given the client this job: continue from there.
    const fromFeed = this.feedDelivered.get(sub.jobId)
    this.feedDelivered.delete(sub.jobId)
    this.feedDirty.delete(sub.jobId)
    if (resumeFrom === undefined && fromFeed) resumeFrom = fromFeed.version
    if (resumeFrom !== undefined && resumeFrom === doc.version) {
      sub.delivered = doc
      if (isTerminalStatus(doc.status)) this.endJob(sub, doc)
      return
    }
    const patch =
      resumeFrom === undefined
        ? undefined
        : (state.patchFrom(resumeFrom) ??
          (fromFeed && fromFeed.version < doc.version ? diffDocuments(fromFeed, doc) : undefined))
    sub.delivered = doc
    this.send(
      patch
        ? { type: 'patch', job: doc.id, version: doc.version, patch }
        : { type: 'snapshot', job: doc.id, version: doc.version, doc },
    )
    if (isTerminalStatus(doc.status)) this.endJob(sub, doc)
  }

  /** Forgets a prepared job whose authorising read failed. */
  abandon(sub: JobSubscription): void {
    this.forgetPending(sub)
  }

  /** Drops a job; one still being started is cancelled, and its start() sends nothing. */
  unsubscribe(jobId: string): void {
    const starting = this.pending.get(jobId)
    if (starting) {
      starting.isCancelled = true
      this.pending.delete(jobId)
    }
    const sub = this.jobs.get(jobId)
    if (sub) {
      this.jobs.delete(jobId)
      sub.handle?.close()
    }
    if (starting || sub) this.checkIdle()
  }

  openFeed(watch: (watcher: FeedWatcher) => () => void): void {
    if (this.unwatchFeed || this.isClosed) return
    this.unwatchFeed = watch(this)
  }

  closeFeed(): void {
    this.unwatchFeed?.()
    this.unwatchFeed = undefined
    this.feedDelivered.clear()
    this.feedDirty.clear()
    this.checkIdle()
  }

  /** FeedWatcher: a job of the tenant changed (or was created). */
  onChange(change: JobChange): void {
    if (this.isClosed) return
    const doc = change.doc
    if (this.jobs.has(doc.id) || this.pending.has(doc.id)) return // its own subscription delivers it
    const base = this.feedDelivered.get(doc.id)
    if (base && base.version >= doc.version) {
      if (isTerminalStatus(doc.status)) this.feedDelivered.delete(doc.id)
      return
    }
    // Congested: keep only the newest document; drain() sends one message from `base`.
    if (this.sink.isCongested()) {
      this.feedDirty.set(doc.id, doc)
      return
    }
    this.feedDirty.delete(doc.id)
    this.deliverFeed(doc, base, change)
  }

  /** Feed resume: a document read from the database (replay); skipped when not newer. */
  replay(state: { doc: JobDocument }): void {
    const doc = state.doc
    if (this.jobs.has(doc.id)) return
    const known = this.feedDelivered.get(doc.id)
    if (known && known.version >= doc.version) return
    // Kept even when terminal: the live notification of this same version may follow.
    this.rememberFeed(doc)
    this.feedDirty.delete(doc.id)
    this.send({ type: 'snapshot', job: doc.id, version: doc.version, doc })
    if (isTerminalStatus(doc.status))
      this.send({ type: 'end', job: doc.id, version: doc.version, status: doc.status })
  }

  error(status: number, detail: string, job?: string): void {
    this.send({ type: 'error', status, detail, ...(job === undefined ? {} : { job }) })
  }

  send(message: MuxMessage): void {
    const version = 'version' in message ? message.version : undefined
    const job = 'job' in message ? message.job : undefined
    this.sink.write(this.sink.encode(message), job, version)
  }

  deliver(sub: JobSubscription, state: JobState, change?: JobChange): void {
    if (this.isClosed || !sub.delivered || this.jobs.get(sub.jobId) !== sub) return
    const doc = state.current!
    const base = sub.delivered
    if (doc.version <= base.version) return
    if (this.sink.isCongested()) {
      sub.isDirty = true
      return
    }
    sub.isDirty = false
    // The history may have dropped the base (a very slow client): the subscription still
    // holds the document it delivered, so a patch is always possible.
    const encode = () =>
      this.sink.encode({
        type: 'patch',
        job: doc.id,
        version: doc.version,
        patch: state.patchFrom(base.version) ?? diffDocuments(base, doc),
      })
    const bytes = change
      ? change.memoize(`${this.sink.encoding}:patch:${base.version}`, encode)
      : encode()
    sub.delivered = doc
    this.sink.write(bytes, doc.id, doc.version)
    if (isTerminalStatus(doc.status)) this.endJob(sub, doc)
  }

  /** The sink drained: one merged patch for every job that changed meanwhile. */
  drain(): void {
    for (const sub of this.jobs.values()) {
      if (!sub.isDirty || this.sink.isCongested()) continue
      const state = sub.handle?.state
      if (state?.current) this.deliver(sub, state)
    }
    for (const [id, doc] of this.feedDirty) {
      if (this.sink.isCongested()) return
      this.feedDirty.delete(id)
      if (this.jobs.has(id) || this.pending.has(id)) continue
      const base = this.feedDelivered.get(id)
      if (!base || base.version < doc.version) this.deliverFeed(doc, base)
    }
  }

  gone(jobId: string): void {
    const sub = this.jobs.get(jobId)
    if (!sub) return
    this.send(deletedMessage(jobId, sub.delivered?.version ?? 0))
    this.unsubscribe(jobId)
  }

  /** FeedWatcher: a job of the tenant was deleted (its own subscription says so itself). */
  onGone(jobId: string, version: number): void {
    if (this.isClosed || this.jobs.has(jobId) || this.pending.has(jobId)) return
    const known = this.feedDelivered.get(jobId)
    this.feedDelivered.delete(jobId)
    this.feedDirty.delete(jobId)
    this.send(deletedMessage(jobId, Math.max(version, known?.version ?? 0)))
  }

  close(): void {
    if (this.isClosed) return
    this.isClosed = true
    for (const sub of this.jobs.values()) sub.handle?.close()
    this.jobs.clear()
    this.unwatchFeed?.()
    this.unwatchFeed = undefined
    this.feedDelivered.clear()
    this.feedDirty.clear()
  }

  private deliverFeed(doc: JobDocument, base: JobDocument | undefined, change?: JobChange): void {
    this.rememberFeed(doc)
    const encode = () =>
      this.sink.encode(
        base
          ? {
              type: 'patch',
              job: doc.id,
              version: doc.version,
              patch: change?.state.patchFrom(base.version) ?? diffDocuments(base, doc),
            }
          : { type: 'snapshot', job: doc.id, version: doc.version, doc },
      )
    const bytes = change
      ? change.memoize(
          base ? `${this.sink.encoding}:patch:${base.version}` : `${this.sink.encoding}:snapshot`,
          encode,
        )
      : encode()
    this.sink.write(bytes, doc.id, doc.version)
    if (isTerminalStatus(doc.status)) {
      this.feedDelivered.delete(doc.id)
      this.send({ type: 'end', job: doc.id, version: doc.version, status: doc.status })
    }
  }

  private endJob(sub: JobSubscription, doc: JobDocument): void {
    if (this.sink.needsPositions) this.ended.set(doc.id, doc.version)
    this.send({ type: 'end', job: doc.id, version: doc.version, status: doc.status })
    // The same change may still reach this connection's feed: it has been delivered.
    if (this.unwatchFeed) this.rememberFeed(doc)
    this.jobs.delete(sub.jobId)
    sub.handle?.close()
    this.checkIdle()
  }

  /**
   * Records what the feed delivered of a job, most recent last. An admin's feed on a busy
   * tenant meets every job that does not end while it watches (and every deleted one): past
   * FEED_MEMORY_MAX_JOBS the least recently delivered is forgotten, and its next change
   * goes out as a snapshot instead of a patch.
   */
  private rememberFeed(doc: JobDocument): void {
    this.feedDelivered.delete(doc.id)
    this.feedDelivered.set(doc.id, doc)
    if (this.feedDelivered.size > FEED_MEMORY_MAX_JOBS) {
      this.feedDelivered.delete(this.feedDelivered.keys().next().value!)
    }
  }

  private forgetPending(sub: JobSubscription): void {
    if (this.pending.get(sub.jobId) === sub) this.pending.delete(sub.jobId)
  }

  private checkIdle(): void {
    // Jobs still being started count: a stream of several finished jobs ends after the last.
    if (!this.isClosed && this.jobs.size === 0 && this.pending.size === 0 && !this.unwatchFeed)
      this.sink.onIdle?.()
  }
}
