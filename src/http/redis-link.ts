// Owns the one Redis connection of the shared limits (LIMITS_STORE=redis): request limits
// and stream caps count through it, for every instance (docs/production.md, "Scaling out").
// What it promises: Redis down never stops the API. Commands fail fast (no offline queue,
// a command timeout), ioredis reconnects for as long as it takes, and until it is back
// every decision is made in this process's memory, as without Redis — counted in
// jobwire_limits_fallbacks_total, said once per outage in the log, and shown as
// `redis: degraded` by /readyz (which it never fails).
import { createHash } from 'node:crypto'
import { Redis } from 'ioredis'
import type { Logger } from '../telemetry/logger.js'

/** Longest a limit check waits for Redis before it is decided locally (ms). */
const COMMAND_TIMEOUT_MS = 500
/** Longest start-up waits for the first connection; it goes on without it (ms). */
const CONNECT_WAIT_MS = 2000

export type LimitsStoreName = 'rateLimit' | 'streamSlots'

/** A Lua script, run by its SHA1 (loaded on the first NOSCRIPT). */
export interface LuaScript {
  readonly text: string
  readonly sha: string
}

export function luaScript(text: string): LuaScript {
  return { text, sha: createHash('sha1').update(text).digest('hex') }
}

export class RedisLink {
  readonly client: Redis
  /** Decisions made in this process's memory because Redis did not answer, per store. */
  readonly fallbacks: Record<LimitsStoreName, number> = { rateLimit: 0, streamSlots: 0 }
  private isDegraded = false
  private readonly readyListeners: Array<() => void> = []

  constructor(
    redisUrl: string,
    private readonly logger: Logger,
  ) {
    this.client = new Redis(redisUrl, {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      commandTimeout: COMMAND_TIMEOUT_MS,
      connectionName: 'jobwire-limits',
      // What close() waits for a socket that is already gone (Redis down) to say so.
      disconnectTimeout: 200,
      // Reconnect delays (ms): 100, 200, 400, … capped at 5000, for as long as it takes.
      retryStrategy: (times: number) => Math.min(100 * 2 ** Math.min(times, 6), 5000),
    })
    this.client.on('error', (error) =>
      logger.debug({ err: error }, 'shared limits: Redis connection error'),
    )
    this.client.on('ready', () => {
      if (this.isDegraded)
        logger.info('shared limits: Redis answers again; limits are shared by every instance')
      this.isDegraded = false
      for (const listener of this.readyListeners) listener()
    })
  }

  /** True while Redis is connected: limits are shared. */
  get isReady(): boolean {
    return this.client.status === 'ready'
  }

  get status(): 'ok' | 'degraded' {
    return this.isReady ? 'ok' : 'degraded'
  }

  /** Called on every (re)connection. */
  onReady(listener: () => void): void {
    this.readyListeners.push(listener)
  }

  /** Connects, waiting at most CONNECT_WAIT_MS: a Redis that is down does not hold start-up. */
  async start(): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    const ready = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), CONNECT_WAIT_MS)
      this.client.once('ready', () => resolve(true))
    })
    // The first attempt's failure rejects here; ioredis goes on retrying.
    this.client.connect().catch(() => undefined)
    const isConnected = await ready
    clearTimeout(timer)
    if (!isConnected) this.fellBack('rateLimit', undefined, false)
  }

  /**
   * A decision made in this process's memory: Redis was not connected, or `error` is the
   * failed command's. The first of an outage is logged as a warning.
   */
  fellBack(store: LimitsStoreName, error?: unknown, isCounted = true): void {
    if (isCounted) this.fallbacks[store]++
    if (this.isDegraded) return
    this.isDegraded = true
    this.logger.warn(
      { err: error },
      'shared limits: Redis does not answer; rate limits and stream caps count in this process until it does',
    )
  }

  /** Runs a script by SHA1, sending its text once when Redis does not know it (NOSCRIPT). */
  async run(script: LuaScript, keys: readonly string[], args: readonly string[]): Promise<unknown> {
    try {
      return await this.client.evalsha(script.sha, keys.length, ...keys, ...args)
    } catch (error) {
      if (!(error instanceof Error && error.message.startsWith('NOSCRIPT'))) throw error
      return this.client.eval(script.text, keys.length, ...keys, ...args)
    }
  }

  async close(): Promise<void> {
    if (this.client.status === 'ready') await this.client.quit().catch(() => undefined)
    if (this.client.status !== 'end') this.client.disconnect()
  }
}
