// Owns every open stream of the process (SSE, WebSocket, parked long-polls): one shared
// ticker sends heartbeats to idle streams and closes streams past their maximum lifetime
// (so a 10k-stream process runs one timer, not 10k), counts streams per user and tenant for
// the caps, and closes everything on shutdown.

export type StreamKind = 'sse' | 'ws' | 'longpoll'

export interface RegisteredStream {
  readonly kind: StreamKind
  readonly tenantId: string
  readonly userKey: string
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

export class StreamRegistry {
  private readonly streams = new Set<RegisteredStream>()
  private readonly perUser = new Map<string, number>()
  private readonly perTenant = new Map<string, number>()
  private ticker: NodeJS.Timeout | undefined
  private isClosing = false
  /** Stream opened/closed hooks for metrics. */
  onChange?: (kind: StreamKind, tenantId: string, delta: 1 | -1) => void

  constructor(private readonly options: RegistryOptions) {}

  get size(): number {
    return this.streams.size
  }

  countFor(tenantId: string, userKey: string): { user: number; tenant: number } {
    return { user: this.perUser.get(userKey) ?? 0, tenant: this.perTenant.get(tenantId) ?? 0 }
  }

  countByKind(kind: StreamKind): number {
    let n = 0
    for (const s of this.streams) if (s.kind === kind) n++
    return n
  }

  add(stream: RegisteredStream): () => void {
    if (this.isClosing) {
      // Opened while shutting down (its authorising read was in flight): close it at once,
      // so that it does not hold the server open until the shutdown timeout.
      queueMicrotask(() => stream.close('shutdown'))
    }
    this.streams.add(stream)
    bump(this.perUser, stream.userKey, 1)
    bump(this.perTenant, stream.tenantId, 1)
    this.onChange?.(stream.kind, stream.tenantId, 1)
    this.ensureTicker()
    let isRemoved = false
    return () => {
      if (isRemoved) return
      isRemoved = true
      this.streams.delete(stream)
      bump(this.perUser, stream.userKey, -1)
      bump(this.perTenant, stream.tenantId, -1)
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

function bump(map: Map<string, number>, key: string, delta: number): void {
  const next = (map.get(key) ?? 0) + delta
  if (next <= 0) map.delete(key)
  else map.set(key, next)
}
