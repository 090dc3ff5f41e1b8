// Many jobs, or the tenant feed, over one Server-Sent Events response (`/v1/events`). Each
// event's data names its job and version ({type, job, version, doc|patch|status}); the
// event `id:` lets one Last-Event-ID restore every position:
//   jobs:  `j.` + comma-separated `<uuid without dashes>:<version base 36>`
//   feed:  `f.` + the server clock (epoch ms, base 36) when the event was written
// The data part is encoded once per change and shared; only the id line is per connection.
import type { ServerResponse } from 'node:http'
import type { MuxMessage, MuxSink } from './multiplexer.js'
import { Multiplexer } from './multiplexer.js'
import { SSE_HEADERS, SSE_HEARTBEAT, sseRetry } from './sse-frame.js'
import type { RegisteredStream, StreamRegistry } from './stream-registry.js'

export interface SseMuxOptions {
  mode: 'jobs' | 'feed'
  tenantId: string
  userKey: string
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
  readonly userKey: string
  readonly expiresAt: number
  readonly mux: Multiplexer
  lastWriteAt = Date.now()
  private unregister: (() => void) | undefined
  private isEnded = false
  private isBlocked = false
  /** Until open() wrote the headers, changes wait (as on a congested stream). */
  private isOpen = false
  /** Identifies the write whose flush reopens a congested stream. */
  private flushTicket = 0

  constructor(
    private readonly res: ServerResponse,
    private readonly options: SseMuxOptions,
  ) {
    this.tenantId = options.tenantId
    this.userKey = options.userKey
    this.expiresAt = Date.now() + options.maxLifetimeMs
    this.mux = new Multiplexer(this, options.ownerId)
  }

  open(registry: StreamRegistry): void {
    this.res.socket?.setTimeout(0)
    this.res.writeHead(200, SSE_HEADERS)
    this.unregister = registry.add(this)
    this.res.on('close', () => this.dispose())
    this.res.on('drain', () => this.onDrained())
    this.res.write(sseRetry(this.options.retryMs))
    this.isOpen = true
    // Feed changes that arrived during the resume read, merged per job.
    this.mux.drain()
  }

  encode(message: MuxMessage): Buffer {
    return Buffer.from(`event: ${message.type}\ndata: ${JSON.stringify(message)}\n\n`)
  }

  write(bytes: Buffer, job?: string, version?: number): void {
    if (this.isEnded) return
    this.lastWriteAt = Date.now()
    const id = job === undefined || version === undefined ? '' : `id: ${this.resumeId()}\n`
    this.options.onWrite?.(bytes.length + id.length)
    const fits = this.res.writableLength + id.length + bytes.length <= this.options.highWaterBytes
    this.res.cork()
    if (id) this.res.write(id)
    if (fits) {
      if (!this.res.write(bytes)) this.isBlocked = true // 'drain' reopens the stream
    } else {
      // Past STREAM_HIGH_WATER_BYTES, res.write() may still return true (the socket's own
      // mark, 16 KiB, can be higher) and then no 'drain' comes: this write's callback reopens
      // the stream once flushed. Only the newest such write counts (as in sse.ts).
      this.isBlocked = true
      const ticket = ++this.flushTicket
      this.res.write(bytes, (error) => {
        if (!error && ticket === this.flushTicket) this.onDrained()
      })
    }
    this.res.uncork()
  }

  private onDrained(): void {
    if (this.isEnded) return
    this.isBlocked = false
    this.mux.drain()
  }

  isCongested(): boolean {
    return this.isBlocked || !this.isOpen
  }

  heartbeat(): void {
    if (this.isBlocked || this.isEnded) return
    this.lastWriteAt = Date.now()
    this.res.write(SSE_HEARTBEAT)
  }

  /** Every job of a `jobs` stream has ended: say so and close. */
  onIdle(): void {
    if (this.options.mode !== 'jobs' || this.isEnded) return
    this.res.write(
      `event: end\ndata: ${JSON.stringify({ type: 'end', reason: 'all jobs ended' })}\n\n`,
    )
    this.close('lifetime')
  }

  close(_reason: 'lifetime' | 'shutdown'): void {
    if (this.isEnded) return
    this.isEnded = true
    this.res.end()
    this.dispose()
  }

  private resumeId(): string {
    if (this.options.mode === 'feed') return `f.${Date.now().toString(36)}`
    const parts: string[] = []
    for (const [id, version] of this.mux.positions())
      parts.push(`${id.replaceAll('-', '')}:${version.toString(36)}`)
    return `j.${parts.join(',')}`
  }

  private dispose(): void {
    this.isEnded = true
    this.mux.close()
    this.unregister?.()
    this.unregister = undefined
  }
}

/** Parses a `j.` resume id into job → version; anything malformed yields an empty map. */
export function parseJobsResumeId(value: string | undefined): Map<string, number> {
  const out = new Map<string, number>()
  if (!value?.startsWith('j.')) return out
  for (const part of value.slice(2).split(',')) {
    const match = /^([0-9a-f]{32}):([0-9a-z]{1,11})$/.exec(part)
    if (!match) continue
    const hex = match[1]!
    const id = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
    const version = parseInt(match[2]!, 36)
    if (Number.isSafeInteger(version) && version >= 1) out.set(id, version)
  }
  return out
}

/** Parses an `f.` resume id into epoch ms, or undefined. */
export function parseFeedResumeId(value: string | undefined): number | undefined {
  const match = value === undefined ? null : /^f\.([0-9a-z]{1,11})$/.exec(value)
  if (!match) return undefined
  const ms = parseInt(match[1]!, 36)
  return Number.isSafeInteger(ms) && ms > 0 ? ms : undefined
}
