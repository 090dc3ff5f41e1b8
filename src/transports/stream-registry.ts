// Owns every open stream of the process (SSE, WebSocket, parked long-polls): one shared
// ticker sends heartbeats to idle streams and closes streams past their maximum lifetime
// (so a 10k-stream process runs one timer, not 10k), frees each stream's cap slots when it
// leaves (src/http/stream-slots.ts counts them), and closes everything on shutdown.

export type StreamKind = 'sse' | 'ws' | 'longpoll'

export interface RegisteredStream {
  readonly kind: StreamKind
  /** For the per-tenant metrics. */
  readonly tenantId: string
  /** Called by the ticker when nothing was written for a heartbeat interval. */
  heartbeat?(): void
  /** epoch ms of the last write (heartbeats are only sent to idle streams). */
  lastWriteAt: number
  /** epoch ms after which the stream is closed so that the client resumes (0: never). */
  readonly expiresAt: number
  /** Ends the stream (the client reconnects and resumes). */
  close(reason: 'lifetime' | 'shutdown'): void
}

export interface RegistryOptions {
  heartbeatMs: number
  /** Ticker period; defaults to min(heartbeatMs, 1000). */
  tickMs?: number
}

/** A stream's cap slots (src/http/stream-slots.ts SlotLease): held while it is registered. */
export interface HeldSlots {
  hold(): () => void
}

export class StreamRegistry {
  private readonly streams = new Set<RegisteredStream>()
  private ticker: NodeJS.Timeout | undefined
  private isClosing = false
  /** Stream opened/closed hooks for metrics. */
  onChange?: (kind: StreamKind, tenantId: string, delta: 1 | -1) => void

  constructor(private readonly options: RegistryOptions) {}

  get size(): number {
    return this.streams.size
  }

  countByKind(kind: StreamKind): number {
    let n = 0
    for (const s of this.streams) if (s.kind === kind) n++
    return n
  }

  /** Registers a stream; it holds `slots` until the returned function removes it. */
  add(stream: RegisteredStream, slots?: HeldSlots): () => void {
    if (this.isClosing) {
      // Opened while shutting down (its authorising read was in flight): close it at once,
      // so that it does not hold the server open until the shutdown timeout.
      queueMicrotask(() => stream.close('shutdown'))
    }
    this.streams.add(stream)
    const free = slots?.hold()
    this.onChange?.(stream.kind, stream.tenantId, 1)
    this.ensureTicker()
    let isRemoved = false
    return () => {
      if (isRemoved) return
      isRemoved = true
      this.streams.delete(stream)
      free?.()
      this.onChange?.(stream.kind, stream.tenantId, -1)
      if (this.streams.size === 0) this.stopTicker()
    }
  }

  /** One pass of the ticker (exposed for fake-timer tests through the timer itself). */
  tick(now = Date.now()): void {
    for (const stream of this.streams) {
      if (stream.expiresAt > 0 && now >= stream.expiresAt) {
        stream.close('lifetime')
        continue
      }
      if (stream.heartbeat && now - stream.lastWriteAt >= this.options.heartbeatMs)
        stream.heartbeat()
    }
  }

  closeAll(): void {
    this.isClosing = true
    for (const stream of [...this.streams]) stream.close('shutdown')
    this.stopTicker()
  }

  private ensureTicker(): void {
    if (this.ticker) return
    const period = this.options.tickMs ?? Math.min(this.options.heartbeatMs, 1000)
    this.ticker = setInterval(() => this.tick(), period)
    this.ticker.unref()
  }

  private stopTicker(): void {
    clearInterval(this.ticker)
    this.ticker = undefined
  }
}
