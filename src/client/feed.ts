// watchFeed(): the tenant feed (`GET /v1/events` without `jobs`) over one connection: every
// job the token may see (admins the tenant's, members their own), as it is created and as it
// changes. A page that shows a tenant's jobs watches them all this way; a new job opens no
// new connection.
//   * Resume: Last-Event-ID is the last `f.` id the server sent or, before the first event,
//     the moment the stream opened by the server's clock (its Date header). The server
//     replays the jobs changed since then (minus 5 s), or sends `reset` when too much changed.
//     A reconnect that can resume from neither (no event yet and no readable Date header, as
//     cross-origin without it exposed) may have missed changes, and reports a reset too.
//     onReset listeners should list the jobs again (GET /v1/jobs).
//   * Documents: the newest one of each job that has not ended, to apply patches to; a job
//     that ends is delivered, then forgotten. A patch that does not apply reconnects, resumed:
//     the replay brings that job's snapshot.
//   * Long-poll fallback (a proxy that buffers streams): the jobs it holds are long-polled;
//     new jobs appear once a stream works again (its resume replays them).
import { isTerminalStatus, type JobDocument } from '../protocol/job.js'
import { encodeFeedResumeId } from '../protocol/resume-id.js'
import type { JobStreamMessage } from '../protocol/stream-messages.js'
import { Connection, type StreamSession, type StreamTarget, type Verdict } from './connection.js'
import { DocChannel } from './doc-channel.js'
import {
  resolveOptions,
  type ConnectionOptions,
  type ConnectionState,
  type WatchError,
} from './options.js'
import { applyPatch, type PatchOperation } from './patch.js'
import type { SseMessage } from './sse-reader.js'

export interface FeedOptions extends ConnectionOptions {
  /** Called with every new document (the same as watchFeed(…).onChange(listener)). */
  onChange?(doc: JobDocument): void
  /** Called when the feed could not catch up (the same as watchFeed(…).onReset(listener)). */
  onReset?(): void
}

export interface JobFeed extends AsyncIterable<JobDocument> {
  /** The state of the feed's one connection. */
  readonly state: ConnectionState
  /** Why the feed stopped (401, 403: a watch token cannot open a feed), if it did. */
  readonly error: WatchError | undefined
  /** The newest document of a job that has not ended. */
  get(jobId: string): JobDocument | undefined
  /** Every new document of every job; at once with the ones the feed holds. */
  onChange(listener: (doc: JobDocument) => void): () => void
  /** The feed may have missed changes (it was away too long): list the jobs again. */
  onReset(listener: () => void): () => void
  /** A job was deleted, or is no longer visible. */
  onDeleted(listener: (jobId: string) => void): () => void
  onState(listener: (state: ConnectionState) => void): () => void
  /** The feed stopped for good with an error. */
  onError(listener: (error: WatchError) => void): () => void
  /** Reconnects at once instead of waiting out a backoff delay. */
  retryNow(): void
  close(): void
}

class Feed implements JobFeed, StreamSession {
  readonly closesWhenIdle = false
  readonly connection: Connection
  error: WatchError | undefined
  private readonly docs = new Map<string, JobDocument>()
  private readonly channel = new DocChannel<JobDocument>(
    (doc) => doc.id,
    () => this.close(),
  )
  private readonly resetListeners = new Set<() => void>()
  private readonly deletedListeners = new Set<(jobId: string) => void>()
  private readonly errorListeners = new Set<(error: WatchError) => void>()
  private resumeId: string | undefined
  private hasOpened = false
  private isResuming = false

  constructor(options: FeedOptions) {
    this.connection = new Connection(this, resolveOptions(options))
    if (options.onChange) this.onChange(options.onChange)
    if (options.onReset) this.onReset(options.onReset)
  }

  get state(): ConnectionState {
    return this.connection.state
  }

  get(jobId: string): JobDocument | undefined {
    return this.docs.get(jobId.toLowerCase())
  }

  onChange(listener: (doc: JobDocument) => void): () => void {
    return this.channel.listen(listener, this.docs.values())
  }

  onReset(listener: () => void): () => void {
    return add(this.resetListeners, listener)
  }

  onDeleted(listener: (jobId: string) => void): () => void {
    return add(this.deletedListeners, listener)
  }

  onState(listener: (state: ConnectionState) => void): () => void {
    return this.connection.onState(listener)
  }

  onError(listener: (error: WatchError) => void): () => void {
    return add(this.errorListeners, listener)
  }

  [Symbol.asyncIterator](): AsyncIterator<JobDocument> {
    return this.channel.iterator(this.docs.values())
  }

  retryNow(): void {
    this.connection.retryNow()
  }

  close(): void {
    this.connection.close()
  }

  // --- StreamSession ---------------------------------------------------------------------

  streamTarget(): StreamTarget {
    this.isResuming = this.resumeId !== undefined
    return { path: '/events', ...(this.resumeId ? { lastEventId: this.resumeId } : {}) }
  }

  onOpen(response: Response): void {
    if (this.hasOpened && !this.isResuming) this.reset()
    this.hasOpened = true
    const serverNow = Date.parse(response.headers.get('date') ?? '')
    if (this.resumeId === undefined && Number.isFinite(serverNow))
      this.resumeId = encodeFeedResumeId(serverNow)
  }

  onMessage(message: SseMessage): Verdict {
    const event = JSON.parse(message.data) as JobStreamMessage<PatchOperation>
    switch (event.type) {
      case 'snapshot':
        this.accept(event.doc)
        break
      case 'patch': {
        const base = this.docs.get(event.job)
        if (!base) return 'restart'
        try {
          this.accept(applyPatch(base, event.patch))
        } catch {
          this.docs.delete(event.job)
          return 'restart'
        }
        break
      }
      case 'end':
        this.docs.delete(event.job)
        if (event.status === 'deleted') this.deleted(event.job)
        break
      case 'reset':
        this.reset()
        break
      default:
        break
    }
    if (message.id?.startsWith('f.')) this.resumeId = message.id
    return 'continue'
  }

  onNoContent(): void {
    // The feed never answers 204.
  }

  onFatal(error: WatchError): void {
    this.error = error
    for (const listener of this.errorListeners) listener(error)
    this.close()
  }

  onClosed(): void {
    this.channel.finish(this.error)
  }

  pollTargets() {
    return [...this.docs.values()].map((doc) => ({ id: doc.id, since: doc.version }))
  }

  onPolled(doc: JobDocument): void {
    this.accept(doc)
    if (isTerminalStatus(doc.status)) this.docs.delete(doc.id)
  }

  onPollFatal(jobId: string): void {
    this.docs.delete(jobId)
    this.deleted(jobId)
  }

  private accept(doc: JobDocument): void {
    const known = this.docs.get(doc.id)
    if (known && known.version >= doc.version) return
    this.docs.set(doc.id, doc)
    this.channel.push(doc)
  }

  private reset(): void {
    for (const listener of this.resetListeners) listener()
  }

  private deleted(jobId: string): void {
    for (const listener of this.deletedListeners) listener(jobId)
  }
}

function add<T>(set: Set<T>, listener: T): () => void {
  set.add(listener)
  return () => set.delete(listener)
}

/**
 * Watches every job the token may see over one connection (`GET /v1/events`): an async
 * iterator of their documents, with onChange, onReset and onDeleted callbacks. Needs a user
 * token; a watch token gets 403.
 *
 *     const feed = watchFeed({ baseUrl, token })
 *     feed.onChange(render)
 *     feed.onReset(() => listAgain())
 */
export function watchFeed(options: FeedOptions = {}): JobFeed {
  const feed = new Feed(options)
  feed.connection.restart()
  return feed
}
