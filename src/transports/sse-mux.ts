// Many jobs, or the tenant feed, over one Server-Sent Events response (`/v1/events`). Each
// event's data names its job and version ({type, job, version, doc|patch|status}); the
// event `id:` lets one Last-Event-ID restore every position:
//   jobs:  `j.` + comma-separated `<uuid without dashes>:<version base 36>`
//   feed:  `f.` + the server clock (epoch ms, base 36) when the event was written
// The data part is encoded once per change and shared; only the id line is per connection.
import type { ServerResponse } from 'node:http'
import type { MuxMessage, MuxSink } from './multiplexer.js'
import { Multiplexer } from './multiplexer.js'
import { SSE_HEADERS, SSE_HEARTBEAT, sseFrame, sseRetry } from './sse-frame.js'
import { SseWriter } from './sse-writer.js'
import { encodeFeedResumeId, encodeJobsResumeId } from '../protocol/resume-id.js'
import type { HeldSlots, RegisteredStream, StreamRegistry } from './stream-registry.js'

export interface SseMuxOptions {
  mode: 'jobs' | 'feed'
  tenantId: string
  /** Headers every response carries (security headers, request id …), flat, before SSE's. */
  headers?: readonly string[]
  /** The stream's cap slots, held while it is open. */
  slots?: HeldSlots
  ownerId: string | undefined
  retryMs: number
  maxLifetimeMs: number
  highWaterBytes: number
  onWrite?(bytes: number): void
}

export class SseMuxStream implements MuxSink, RegisteredStream {
  readonly kind = 'sse' as const
  readonly encoding = 'sse-mux' as const
  readonly needsPositions = true
  readonly tenantId: string
  readonly expiresAt: number
  readonly mux: Multiplexer
  private unregister: (() => void) | undefined
  private isEnded = false
  private readonly writer: SseWriter
  /** Until open() wrote the headers, changes wait (as on a congested stream). */
  private isOpen = false

  constructor(
    private readonly res: ServerResponse,
    private readonly options: SseMuxOptions,
  ) {
    this.tenantId = options.tenantId
    this.expiresAt = Date.now() + options.maxLifetimeMs
    this.mux = new Multiplexer(this, options.ownerId)
    this.writer = new SseWriter(res, options.highWaterBytes, () => this.onDrained())
  }

  get lastWriteAt(): number {
    return this.writer.lastWriteAt
  }

  open(registry: StreamRegistry): void {
    this.res.socket?.setTimeout(0)
    this.res.writeHead(200, [...(this.options.headers ?? []), ...SSE_HEADERS])
    this.unregister = registry.add(this, this.options.slots)
    this.res.on('close', () => this.dispose())
    this.res.write(sseRetry(this.options.retryMs))
    this.isOpen = true
    // Feed changes that arrived during the resume read, merged per job.
    this.mux.drain()
  }

  encode(message: MuxMessage): Buffer {
    return sseFrame(message.type, message)
  }

  write(bytes: Buffer, job?: string, version?: number): void {
    if (this.isEnded) return
    const id = job === undefined || version === undefined ? '' : `id: ${this.resumeId()}\n`
    this.options.onWrite?.(bytes.length + id.length)
    if (id) this.writer.write(id, bytes)
    else this.writer.write(bytes)
  }

  private onDrained(): void {
    if (!this.isEnded) this.mux.drain()
  }

  isCongested(): boolean {
    return this.writer.isCongested || !this.isOpen
  }

  heartbeat(): void {
    if (this.writer.isCongested || this.isEnded) return
    this.writer.write(SSE_HEARTBEAT)
  }

  /** Every job of a `jobs` stream has ended: say so and close. */
  onIdle(): void {
    if (this.options.mode !== 'jobs' || this.isEnded) return
    this.res.write(sseFrame('end', { type: 'end', reason: 'all jobs ended' }))
    this.close('lifetime')
  }

  close(_reason: 'lifetime' | 'shutdown'): void {
    if (this.isEnded) return
    this.isEnded = true
    this.res.end()
    this.dispose()
  }

  private resumeId(): string {
    if (this.options.mode === 'feed') return encodeFeedResumeId(Date.now())
    return encodeJobsResumeId(this.mux.positions())
  }

  private dispose(): void {
    this.isEnded = true
    this.mux.close()
    this.unregister?.()
    this.unregister = undefined
  }
}
