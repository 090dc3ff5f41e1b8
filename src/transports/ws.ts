// One WebSocket connection as a multiplexed stream (docs/contract.md §9): a Multiplexer over a sink
// that sends JSON text messages. Backpressure uses ws's public API: when bufferedAmount
// passes the high-water mark the connection is congested; the send callbacks tell when the
// kernel took the bytes, and once below the mark every dirty job gets one merged patch.
// Some messages are written whatever the congestion (snapshots, ends, errors): a client
// that never reads cannot make them pile up, as past maxBufferedBytes the socket is dropped.
// Protocol pings run from one shared timer per server (WsHeartbeat), not one per socket.
import type { WebSocket } from 'ws'
import type { MuxMessage, MuxSink } from './multiplexer.js'
import { Multiplexer } from './multiplexer.js'
import type { HeldSlots, RegisteredStream, StreamRegistry } from './stream-registry.js'

export const WS_CLOSE = { normal: 1000, goingAway: 1001, policy: 1008, tooBig: 1009 } as const

export interface WsConnectionOptions {
  tenantId: string
  /** The connection's cap slots, held while it is open. */
  slots?: HeldSlots
  ownerId: string | undefined
  highWaterBytes: number
  /** Buffered bytes past which the peer is taken for one that does not read: terminated. */
  maxBufferedBytes: number
  onWrite?(bytes: number): void
  /** Close the socket when its last job ends (the single-job `GET /v1/jobs/:id` form). */
  closeWhenIdle?: boolean
}

export class WsConnection implements MuxSink, RegisteredStream {
  readonly kind = 'ws' as const
  readonly encoding = 'ws' as const
  readonly needsPositions = false
  readonly expiresAt = 0
  readonly tenantId: string
  readonly mux: Multiplexer
  lastWriteAt = Date.now()
  isAlive = true
  badMessages = 0
  private unregister: (() => void) | undefined
  private isDrainPending = false
  /** Set when a change was held back because the socket was congested. */
  private hasHeldBack = false

  constructor(
    readonly socket: WebSocket,
    private readonly options: WsConnectionOptions,
    registry: StreamRegistry,
  ) {
    this.tenantId = options.tenantId
    this.mux = new Multiplexer(this, options.ownerId)
    this.unregister = registry.add(this, options.slots)
    socket.on('pong', () => (this.isAlive = true))
    socket.on('close', () => this.dispose())
    socket.on('error', () => this.dispose())
  }

  encode(message: MuxMessage): Buffer {
    return Buffer.from(JSON.stringify(message))
  }

  write(bytes: Buffer): void {
    if (this.socket.readyState !== this.socket.OPEN) return
    this.lastWriteAt = Date.now()
    this.options.onWrite?.(bytes.length)
    this.socket.send(bytes, { binary: false }, () => this.afterSend())
    if (this.socket.bufferedAmount > this.options.maxBufferedBytes) {
      this.socket.terminate()
      this.dispose()
    }
  }

  isCongested(): boolean {
    const congested = this.socket.bufferedAmount > this.options.highWaterBytes
    if (congested) this.hasHeldBack = true
    return congested
  }

  onIdle(): void {
    if (this.options.closeWhenIdle) this.socket.close(WS_CLOSE.normal, 'job ended')
  }

  close(reason: 'lifetime' | 'shutdown'): void {
    this.socket.close(
      WS_CLOSE.goingAway,
      reason === 'shutdown' ? 'server shutting down' : 'reconnect',
    )
    this.dispose()
  }

  dispose(): void {
    this.mux.close()
    this.unregister?.()
    this.unregister = undefined
  }

  private afterSend(): void {
    if (
      !this.hasHeldBack ||
      this.isDrainPending ||
      this.socket.bufferedAmount > this.options.highWaterBytes
    )
      return
    this.hasHeldBack = false
    this.isDrainPending = true
    // Let the current burst of callbacks finish before sending merged patches.
    setImmediate(() => {
      this.isDrainPending = false
      this.mux.drain()
    })
  }
}

/** Pings every connection each interval; a peer that did not answer the last ping is dropped. */
export class WsHeartbeat {
  private readonly connections = new Set<WsConnection>()
  private timer: NodeJS.Timeout | undefined

  constructor(private readonly intervalMs: number) {}

  add(connection: WsConnection): void {
    this.connections.add(connection)
    connection.socket.on('close', () => this.connections.delete(connection))
    if (!this.timer) {
      this.timer = setInterval(() => this.tick(), this.intervalMs)
      this.timer.unref()
    }
  }

  tick(): void {
    for (const connection of this.connections) {
      if (!connection.isAlive) {
        connection.socket.terminate()
        connection.dispose()
        this.connections.delete(connection)
        continue
      }
      connection.isAlive = false
      connection.socket.ping()
    }
  }

  stop(): void {
    clearInterval(this.timer)
    this.timer = undefined
  }
}
