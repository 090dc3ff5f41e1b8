// A shared client: every job it watches travels over ONE `GET /v1/events?jobs=a,b,…`
// stream (browsers allow only 6 HTTP/1.1 connections per origin). Adding or removing a job
// reconnects with the new list and a Last-Event-ID that carries the position of every job
// the client holds, so the server resumes each with one patch (or nothing) instead of a
// snapshot. Jobs that ended are dropped from the list; with none left the connection closes.
import { isTerminalStatus, type JobDocument } from '../protocol/job.js'
import { QUERY } from '../protocol/http.js'
import { encodeJobsResumeId } from '../protocol/resume-id.js'
import { Connection, type StreamSession, type StreamTarget, type Verdict } from './connection.js'
import { DocChannel } from './doc-channel.js'
import { JobWatchBase, type JobWatch } from './job-watch.js'
import {
  resolveOptions,
  WatchError,
  type ConnectionOptions,
  type ConnectionState,
} from './options.js'
import type { PatchOperation } from './patch.js'
import type { SseMessage } from './sse-reader.js'
import type {
  JobStreamMessage,
  StreamEndMessage,
  UnavailableMessage,
} from '../protocol/stream-messages.js'

/** The data of every event on `/v1/events` (each names its job and version; docs/api.md). */
type MuxEvent = JobStreamMessage<PatchOperation> | StreamEndMessage | UnavailableMessage

export interface ClientOptions extends ConnectionOptions {
  /** Close the client (and end its iteration) once every watched job ended. Default false. */
  closeWhenIdle?: boolean
}

export interface JobwireClient extends AsyncIterable<JobDocument> {
  /** Watches a job over the shared connection; the same id gives the same watch while active. */
  watch(jobId: string): JobWatch
  /** Watches several jobs with one reconnect. */
  watchMany(jobIds: Iterable<string>): JobWatch[]
  unwatch(jobId: string): void
  /** The newest document of a watched job. */
  get(jobId: string): JobDocument | undefined
  /** Ids of the jobs still being watched (not ended). */
  readonly jobIds: string[]
  readonly state: ConnectionState
  onState(listener: (state: ConnectionState) => void): () => void
  /** Reconnects at once instead of waiting out a backoff delay. */
  retryNow(): void
  /** Every new document of every job; at once with the current ones. */
  onChange(listener: (doc: JobDocument) => void): () => void
  /** A job that could not be watched (404, 403 …) or was deleted. */
  onError(listener: (jobId: string, error: WatchError) => void): () => void
  close(): void
}

class SharedJobWatch extends JobWatchBase {
  constructor(
    jobId: string,
    private readonly client: SharedClient,
  ) {
    super(jobId)
  }
  get state(): ConnectionState {
    return this.client.state
  }
  onState(listener: (state: ConnectionState) => void): () => void {
    return this.client.onState(listener)
  }
  retryNow(): void {
    this.client.retryNow()
  }
  close(): void {
    this.client.unwatch(this.jobId)
  }
}

class SharedClient implements JobwireClient, StreamSession {
  readonly closesWhenIdle: boolean
  private readonly connection: Connection
  /** Watched jobs that have not ended, in the order they were added. */
  private readonly active = new Map<string, SharedJobWatch>()
  private readonly channel = new DocChannel<JobDocument>(
    (doc) => doc.id,
    () => this.close(),
  )
  private readonly errorListeners = new Set<(jobId: string, error: WatchError) => void>()

  constructor(options: ClientOptions) {
    this.closesWhenIdle = options.closeWhenIdle ?? false
    this.connection = new Connection(this, resolveOptions(options))
  }

  get state(): ConnectionState {
    return this.connection.state
  }

  get jobIds(): string[] {
    return [...this.active.keys()]
  }

  watch(jobId: string): JobWatch {
    return this.watchMany([jobId])[0]!
  }

  watchMany(jobIds: Iterable<string>): JobWatch[] {
    const out: JobWatch[] = []
    let isChanged = false
    for (const raw of jobIds) {
      const id = raw.toLowerCase()
      let entry = this.active.get(id)
      if (!entry) {
        entry = new SharedJobWatch(id, this)
        if (this.connection.isClosed) entry.finish()
        else {
          this.active.set(id, entry)
          entry.onChange((doc) => this.channel.push(doc))
          isChanged = true
        }
      }
      out.push(entry)
    }
    if (isChanged) this.connection.restart()
    return out
  }

  unwatch(jobId: string): void {
    const entry = this.active.get(jobId.toLowerCase())
    if (!entry) return
    this.active.delete(entry.jobId)
    entry.finish()
    this.connection.restart()
  }

  get(jobId: string): JobDocument | undefined {
    return this.active.get(jobId.toLowerCase())?.current
  }

  onState(listener: (state: ConnectionState) => void): () => void {
    return this.connection.onState(listener)
  }

  retryNow(): void {
    this.connection.retryNow()
  }

  onChange(listener: (doc: JobDocument) => void): () => void {
    return this.channel.listen(listener, this.currentDocs())
  }

  onError(listener: (jobId: string, error: WatchError) => void): () => void {
    this.errorListeners.add(listener)
    return () => this.errorListeners.delete(listener)
  }

  [Symbol.asyncIterator](): AsyncIterator<JobDocument> {
    return this.channel.iterator(this.currentDocs())
  }

  close(): void {
    this.connection.close()
  }

  // --- StreamSession ---------------------------------------------------------------------

  streamTarget(): StreamTarget | undefined {
    if (this.active.size === 0) return undefined
    const positions: Array<[string, number]> = []
    for (const entry of this.active.values())
      if (entry.current && !entry.needsSnapshot)
        positions.push([entry.jobId, entry.current.version])
    return {
      path: '/events',
      query: { [QUERY.jobs]: this.jobIds.join(',') },
      ...(positions.length > 0 ? { lastEventId: encodeJobsResumeId(positions) } : {}),
    }
  }

  onMessage(message: SseMessage): Verdict {
    const event = JSON.parse(message.data) as MuxEvent
    switch (event.type) {
      case 'snapshot':
        this.active.get(event.job)?.accept(event.doc, true)
        return 'continue'
      case 'patch': {
        const entry = this.active.get(event.job)
        return !entry || entry.applyPatch(event.patch) ? 'continue' : 'restart'
      }
      case 'end':
        // Without a job: every job of this connection ended (others may have been added).
        if (!('job' in event)) return 'end'
        this.end(
          event.job,
          event.status === 'deleted' ? new WatchError('The job was deleted.', 404) : undefined,
        )
        return 'continue'
      // `unavailable` on SSE (never `error`, docs/api.md); older servers sent `error`.
      case 'unavailable':
      case 'error':
        if (event.type === 'error' && event.job !== undefined)
          this.end(event.job, new WatchError(event.detail, event.status))
        for (const failure of event.jobs ?? [])
          this.end(failure.job, new WatchError(failure.detail, failure.status))
        return 'continue'
      default:
        return 'continue'
    }
  }

  onNoContent(): void {
    // /v1/events never answers 204; nothing to do.
  }

  onFatal(error: WatchError): void {
    for (const id of this.jobIds) this.end(id, error)
  }

  onClosed(): void {
    for (const entry of this.active.values()) entry.finish()
    this.active.clear()
    this.channel.finish()
  }

  pollTargets() {
    return [...this.active.values()].map((e) => ({ id: e.jobId, since: e.current?.version ?? 0 }))
  }

  onPolled(doc: JobDocument): void {
    this.active.get(doc.id)?.accept(doc, false)
    if (isTerminalStatus(doc.status)) this.end(doc.id)
  }

  onPollFatal(jobId: string, error: WatchError): void {
    this.end(jobId, error)
  }

  private end(jobId: string, error?: WatchError): void {
    const entry = this.active.get(jobId)
    if (!entry) return
    this.active.delete(jobId)
    entry.finish(error)
    if (error) for (const listener of this.errorListeners) listener(jobId, error)
    if (this.active.size === 0 && this.closesWhenIdle) this.connection.close()
  }

  private currentDocs(): JobDocument[] {
    return [...this.active.values()].flatMap((e) => (e.current ? [e.current] : []))
  }
}

/** A client that multiplexes every job it watches over one connection. */
export function createClient(options: ClientOptions = {}): JobwireClient {
  return new SharedClient(options)
}

/**
 * Watches many jobs over one connection. The result iterates over every job's documents
 * and ends when all of them ended (closeWhenIdle); `watch(id)` adds more.
 */
export function watchMany(jobIds: Iterable<string>, options: ClientOptions = {}): JobwireClient {
  const client = createClient({ closeWhenIdle: true, ...options })
  client.watchMany(jobIds)
  return client
}
