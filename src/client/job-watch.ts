// watch(jobId): one job over its own SSE stream (`/v1/jobs/:id/events`), resumed with
// Last-Event-ID = the version the client holds. Every patch is checked against that version
// (its leading `test` op); one that does not apply makes the client reconnect without
// Last-Event-ID, i.e. for a fresh snapshot. Stops for good on `end` and on 204.
import { isTerminalStatus, type JobDocument } from '../protocol/job.js'
import { DELETED_STATUS } from '../protocol/stream-messages.js'
import { Connection, type StreamSession, type StreamTarget, type Verdict } from './connection.js'
import { DocChannel } from './doc-channel.js'
import {
  resolveOptions,
  WatchError,
  type ConnectionOptions,
  type ConnectionState,
} from './options.js'
import { applyPatch, type PatchOperation } from './patch.js'
import type { SseMessage } from './sse-reader.js'

export interface JobWatch extends AsyncIterable<JobDocument> {
  readonly jobId: string
  /** The newest document, once the first one arrived. */
  readonly current: JobDocument | undefined
  /** The state of the connection that carries this job (shared by a multiplexing client). */
  readonly state: ConnectionState
  /** Why the watch stopped early: 401, 403, 404 (also for another tenant's job) … */
  readonly error: WatchError | undefined
  /** True once the job ended, the watch failed or it was closed. */
  readonly isDone: boolean
  /**
   * Resolves with the final document once the job ends (or the last one known when the watch
   * is closed first); rejects with the WatchError when the watch fails.
   */
  readonly done: Promise<JobDocument | undefined>
  /** Called with every new document, and at once with the current one if there is one. */
  onChange(listener: (doc: JobDocument) => void): () => void
  onState(listener: (state: ConnectionState) => void): () => void
  /** Reconnects at once instead of waiting out a backoff delay (a "retry now" button). */
  retryNow(): void
  /** Stops watching. Leaving a `for await` loop early does the same. */
  close(): void
}

/** What a job's watch knows and promises, whichever connection feeds it. */
export abstract class JobWatchBase implements JobWatch {
  current: JobDocument | undefined
  error: WatchError | undefined
  /** The next stream must start from a snapshot: a patch did not apply. */
  needsSnapshot = false
  protected readonly channel: DocChannel<JobDocument>
  private donePromise: Promise<JobDocument | undefined> | undefined
  private readonly settlers: Array<() => void> = []

  constructor(readonly jobId: string) {
    this.channel = new DocChannel(
      (doc) => doc.id,
      () => this.close(),
    )
  }

  abstract readonly state: ConnectionState
  abstract onState(listener: (state: ConnectionState) => void): () => void
  abstract retryNow(): void
  abstract close(): void

  get isDone(): boolean {
    return this.channel.finished
  }

  get done(): Promise<JobDocument | undefined> {
    // Made on first use, so a failed watch nobody awaits raises no unhandled rejection.
    this.donePromise ??= new Promise((resolve, reject) => {
      const settle = () => (this.error ? reject(this.error) : resolve(this.current))
      if (this.channel.finished) return settle()
      this.settlers.push(settle)
    })
    return this.donePromise
  }

  onChange(listener: (doc: JobDocument) => void): () => void {
    return this.channel.listen(listener, this.current ? [this.current] : [])
  }

  [Symbol.asyncIterator](): AsyncIterator<JobDocument> {
    return this.channel.iterator(this.current ? [this.current] : [])
  }

  /** Takes a document from the server; `replace` for snapshots, else only when newer. */
  accept(doc: JobDocument, replace: boolean): void {
    if (this.channel.finished) return
    if (this.current && doc.version === this.current.version && !this.needsSnapshot) return
    if (!replace && this.current && doc.version < this.current.version) return
    this.current = doc
    this.needsSnapshot = false
    this.channel.push(doc)
  }

  /** Applies a patch event; false (and needsSnapshot) when it does not apply. */
  applyPatch(patch: PatchOperation[]): boolean {
    if (!this.current) {
      this.needsSnapshot = true
      return false
    }
    try {
      this.accept(applyPatch(this.current, patch), true)
      return true
    } catch {
      this.needsSnapshot = true
      return false
    }
  }

  finish(error?: WatchError): void {
    if (this.channel.finished) return
    this.error = error
    this.channel.finish(error)
    for (const settle of this.settlers.splice(0)) settle()
  }
}

class SingleJobWatch extends JobWatchBase implements StreamSession {
  readonly closesWhenIdle = true
  readonly connection: Connection

  constructor(jobId: string, options: ConnectionOptions) {
    super(jobId)
    this.connection = new Connection(this, resolveOptions(options))
  }

  get state(): ConnectionState {
    return this.connection.state
  }

  onState(listener: (state: ConnectionState) => void): () => void {
    return this.connection.onState(listener)
  }

  retryNow(): void {
    this.connection.retryNow()
  }

  close(): void {
    this.connection.close()
  }

  streamTarget(): StreamTarget | undefined {
    if (this.isDone) return undefined
    const resume = this.current && !this.needsSnapshot
    return {
      path: `/jobs/${encodeURIComponent(this.jobId)}/events`,
      ...(resume ? { lastEventId: String(this.current!.version) } : {}),
    }
  }

  onMessage(message: SseMessage): Verdict {
    const data = JSON.parse(message.data) as unknown
    switch (message.event) {
      case 'snapshot':
        this.accept(data as JobDocument, true)
        return 'continue'
      case 'patch':
        return this.applyPatch(data as PatchOperation[]) ? 'continue' : 'restart'
      case 'end':
        // `status: "deleted"` (docs/api.md, "Deleted jobs"); older servers said `reason`.
        this.finish(
          (data as { status?: string }).status === DELETED_STATUS ||
            (data as { reason?: string }).reason === DELETED_STATUS
            ? new WatchError('The job was deleted.', 404)
            : undefined,
        )
        return 'end'
      default:
        return 'continue'
    }
  }

  onNoContent(): void {
    this.finish()
  }

  onFatal(error: WatchError): void {
    this.finish(error)
  }

  onClosed(): void {
    this.finish()
  }

  pollTargets() {
    return this.isDone ? [] : [{ id: this.jobId, since: this.current?.version ?? 0 }]
  }

  onPolled(doc: JobDocument): void {
    this.accept(doc, false)
    if (isTerminalStatus(doc.status)) this.finish()
  }

  onPollFatal(_jobId: string, error: WatchError): void {
    this.finish(error)
  }
}

export interface WatchOptions extends ConnectionOptions {
  /** Called with every new document (the same as watch(…).onChange(listener)). */
  onChange?(doc: JobDocument): void
}

/**
 * Watches one job: an async iterator of its documents, and an onChange callback form.
 *
 *     for await (const job of watch(id, { baseUrl, token })) render(job)
 */
export function watch(jobId: string, options: WatchOptions = {}): JobWatch {
  const watcher = new SingleJobWatch(jobId.toLowerCase(), options)
  if (options.onChange) watcher.onChange(options.onChange)
  watcher.connection.restart()
  return watcher
}
