// One job as a Server-Sent Events stream (docs/contract.md §7). Receives an already-authorised watch:
// the route registered it before the authorising read, so nothing committed meanwhile is
// missed. Promises:
//   * snapshot first (or one patch from Last-Event-ID when the server still has that
//     version), then one patch per change, each starting with a test of /version;
//   * bytes are built once per (format, base version) and shared by every stream;
//   * a slow client is never buffered without bound: while its socket is congested nothing
//     is queued; on drain it gets one merged patch from what it last received;
//   * on a terminal status: that change, then `event: end`, then close;
//   * disconnect frees the watch, the registry entry and every timer at once.
import type { ServerResponse } from 'node:http'
import { isTerminalStatus, type JobDocument } from '../protocol/job.js'
import { deletedMessage } from '../protocol/stream-messages.js'
import type { JobChange, JobState, PendingWatch, Watcher, WatchHandle } from '../events/hub.js'
import { typedEvents } from '../events/typed-events.js'
import { diffDocuments } from '../events/patch.js'
import type { HeldSlots, RegisteredStream, StreamRegistry } from './stream-registry.js'
import { SSE_HEADERS, SSE_HEARTBEAT, sseFrame, sseRetry } from './sse-frame.js'
import { SseWriter } from './sse-writer.js'
import type { SseFrames } from './compat-formats.js'

export const SSE_FORMATS = ['patch', 'full', 'events'] as const
export type SseFormat = (typeof SSE_FORMATS)[number]

export interface SseJobStreamOptions {
  format: SseFormat
  retryMs: number
  maxLifetimeMs: number
  highWaterBytes: number
  tenantId: string
  /** Headers every response carries (security headers, request id …), flat, before SSE's. */
  headers?: readonly string[]
  /** The stream's cap slots, held while it is open. */
  slots?: HeldSlots
  connectionId: string
  /**
   * A vocabulary of its own (the compatibility streams, src/transports/compat-formats.ts):
   * replaces `format`'s frames and the closing `end` event.
   */
  frames?: SseFrames
  /** Called once with the number of bytes of each event written (metrics). */
  onWrite?(bytes: number): void
  /** Called once per write that carries job events, i.e. not for heartbeats (metrics). */
  onEvent?(): void
}

export class SseJobStream implements Watcher, RegisteredStream {
  readonly kind = 'sse' as const
  readonly tenantId: string
  readonly expiresAt: number
  private handle: WatchHandle | undefined
  private unregister: (() => void) | undefined
  /** The document the client has; undefined until the first event. */
  private delivered: JobDocument | undefined
  private isOpen = false
  private isEnded = false
  private readonly writer: SseWriter

  constructor(
    private readonly res: ServerResponse,
    private readonly options: SseJobStreamOptions,
  ) {
    this.tenantId = options.tenantId
    this.expiresAt = Date.now() + options.maxLifetimeMs
    this.writer = new SseWriter(res, options.highWaterBytes, () => this.onDrain())
  }

  get lastWriteAt(): number {
    return this.writer.lastWriteAt
  }

  /**
   * Opens the stream on an authorised watch (its state holds the authorised document) and
   * attaches to it. `resumeFrom` is the client's Last-Event-ID version, when it sent a usable
   * one.
   */
  open(watch: PendingWatch, registry: StreamRegistry, resumeFrom: number | undefined): void {
    const handle = watch.attach(this)
    this.handle = handle
    const res = this.res
    res.socket?.setTimeout(0)
    res.socket?.setNoDelay(true)
    res.writeHead(200, [...(this.options.headers ?? []), ...SSE_HEADERS])
    this.isOpen = true
    this.unregister = registry.add(this, this.options.slots)
    res.on('close', () => this.dispose())

    const state = handle.state
    const doc = state.current!
    let first: Buffer
    const frames = this.options.frames
    if (frames) {
      const base = resumeFrom === undefined ? undefined : state.documentAt(resumeFrom)
      first = Buffer.concat([
        sseRetry(this.options.retryMs),
        frames.first(base, doc, this.options.connectionId),
      ])
    } else if (this.options.format === 'events') {
      const base = resumeFrom === undefined ? undefined : state.documentAt(resumeFrom)
      first = Buffer.concat([
        sseRetry(this.options.retryMs),
        sseFrame(
          'connected',
          { connectionId: this.options.connectionId, jobId: doc.id },
          doc.version,
        ),
        ...typedEvents(base, doc).map((e) => sseFrame(e.event, e.data, doc.version)),
      ])
    } else {
      const resume =
        resumeFrom !== undefined && this.options.format === 'patch'
          ? state.patchFrom(resumeFrom)
          : undefined
      const upToDate = resumeFrom === doc.version
      first = Buffer.concat([
        sseRetry(this.options.retryMs),
        ...(upToDate
          ? []
          : [
              resume
                ? sseFrame('patch', resume, doc.version)
                : sseFrame('snapshot', doc, doc.version),
            ]),
      ])
    }
    this.delivered = doc
    this.write(first)
    if (isTerminalStatus(doc.status)) this.end()
  }

  onChange(change: JobChange): void {
    if (!this.isOpen || this.isEnded || this.writer.isCongested) return
    const base = this.delivered
    if (!base || change.doc.version <= base.version) return
    this.deliver(change.state, base, change)
  }

  onGone(): void {
    if (!this.isOpen || this.isEnded) return
    const frames = this.options.frames
    this.write(
      frames
        ? frames.gone(this.delivered!)
        : sseFrame('end', deletedMessage(this.handle!.state.id, this.delivered?.version ?? 0)),
    )
    this.end()
  }

  heartbeat(): void {
    if (!this.writer.isCongested) this.write(SSE_HEARTBEAT, false)
  }

  close(_reason: 'lifetime' | 'shutdown'): void {
    if (this.isEnded) return
    this.isEnded = true
    this.res.end()
    this.dispose()
  }

  /** Writes what the client needs to go from `base` to the state's current document. */
  private deliver(state: JobState, base: JobDocument, change?: JobChange): void {
    const doc = state.current!
    const frame = change
      ? change.memoize(
          this.options.frames
            ? `sse:${this.options.frames.key}:${base.version}`
            : this.options.format === 'full'
              ? 'sse:full'
              : `sse:${this.options.format}:${base.version}`,
          () => this.frameFor(state, base, doc),
        )
      : this.frameFor(state, base, doc)
    this.delivered = doc
    this.write(frame)
    if (isTerminalStatus(doc.status)) this.end()
  }

  private frameFor(state: JobState, base: JobDocument, doc: JobDocument): Buffer {
    if (this.options.frames) return this.options.frames.change(base, doc)
    switch (this.options.format) {
      case 'patch': {
        // The history may have dropped the base (a very slow client); the stream still holds
        // the document it delivered, so a patch is always possible.
        const patch = state.patchFrom(base.version) ?? diffDocuments(base, doc)
        return sseFrame('patch', patch, doc.version)
      }
      case 'full':
        return sseFrame('snapshot', doc, doc.version)
      case 'events':
        return Buffer.concat(
          typedEvents(base, doc).map((e) => sseFrame(e.event, e.data, doc.version)),
        )
    }
  }

  private write(buffer: Buffer, isEvent = true): void {
    if (buffer.length === 0) return
    this.options.onWrite?.(buffer.length)
    if (isEvent) this.options.onEvent?.()
    this.writer.write(buffer)
  }

  private onDrain(): void {
    if (this.isEnded) return
    const state = this.handle?.state
    if (state?.current && this.delivered && state.current.version > this.delivered.version) {
      this.deliver(state, this.delivered)
    }
  }

  private end(): void {
    if (this.isEnded) return
    const doc = this.delivered!
    // A compatibility stream's clients know no `end` event: the stream just closes.
    if (!this.options.frames)
      this.write(
        sseFrame('end', { job: doc.id, version: doc.version, status: doc.status }, doc.version),
      )
    this.isEnded = true
    this.res.end()
    this.dispose()
  }

  private dispose(): void {
    this.isOpen = false
    this.isEnded = true
    this.handle?.close()
    this.unregister?.()
    this.unregister = undefined
  }
}
