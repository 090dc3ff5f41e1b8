// The limits shared by every instance through Redis (LIMITS_STORE=redis, the default when
// REDIS_URL is set; docs/production.md, "Scaling out"): one connection (src/http/redis-link.ts)
// carries the request limits — express-rate-limit's Redis store (rate-limit-redis), one key
// prefix per kind — and the stream caps (src/http/redis-stream-slots.ts). src/service.ts
// hands them to the frontend as its stores. Redis down never stops the API: each check is
// then made in this process's memory, which is how jobwire counts without Redis.
import { createHash } from 'node:crypto'
import { MemoryStore, type IncrementResponse, type Options, type Store } from 'express-rate-limit'
import { RedisStore, type RedisReply } from 'rate-limit-redis'
import type { Config } from '../config/index.js'
import type { Logger } from '../telemetry/logger.js'
import type { RateLimitKind } from './rate-limit.js'
import { RedisLink } from './redis-link.js'
import { RedisStreamSlots } from './redis-stream-slots.js'
import type { StreamCaps } from './stream-slots.js'

export interface RedisLimitsOptions {
  /** REDIS_URL. */
  redisUrl: string
  config: Pick<Config, 'LIMITS_KEY_PREFIX' | 'STREAM_SLOT_TTL_MS'> & StreamCaps
  logger: Logger
}

export interface RedisLimits {
  /** What createFrontend() takes as `stores`. */
  stores: { rateLimits: Record<RateLimitKind, Store>; streamSlots: RedisStreamSlots }
  /** The connection: whether Redis answers, and the decisions made without it. */
  link: RedisLink
  /** Connects, waiting at most 2 s: start-up goes on without Redis. */
  start(): Promise<void>
  close(): Promise<void>
}

const KINDS: readonly RateLimitKind[] = ['user', 'tenant', 'watch', 'ip']

export function createRedisLimits(options: RedisLimitsOptions): RedisLimits {
  const { config } = options
  const link = new RedisLink(options.redisUrl, options.logger)
  const rateLimits = {} as Record<RateLimitKind, RedisOrMemoryStore>
  for (const kind of KINDS)
    rateLimits[kind] = new RedisOrMemoryStore(link, `${config.LIMITS_KEY_PREFIX}rl:${kind}:`)
  const streamSlots = new RedisStreamSlots({
    link,
    caps: config,
    prefix: `${config.LIMITS_KEY_PREFIX}streams:`,
    ttlMs: config.STREAM_SLOT_TTL_MS,
  })
  return {
    stores: { rateLimits, streamSlots },
    link,
    start: () => link.start(),
    async close() {
      await streamSlots.close()
      for (const store of Object.values(rateLimits)) store.shutdown()
      await link.close()
    },
  }
}

/**
 * One kind's request counts: in Redis (rate-limit-redis's fixed window, shared by every
 * instance) while it answers, in this process's memory (express-rate-limit's MemoryStore)
 * while it does not. A count kept in memory during an outage stays there: once Redis is
 * back a client is counted on from what Redis had.
 */
class RedisOrMemoryStore implements Store {
  readonly localKeys = false
  private readonly redis: RedisStore
  private readonly memory = new MemoryStore()

  constructor(
    private readonly link: RedisLink,
    readonly prefix: string,
  ) {
    this.redis = new RedisStore({
      prefix,
      sendCommand: (command: string, ...args: string[]) => sendCommand(link, command, args),
    })
  }

  async init(options: Options): Promise<void> {
    this.memory.init(options)
    // It cannot fail for Redis being down (sendCommand below); anything else fails each
    // count over to memory, where it shows in the fallback metric.
    await this.redis.init(options).catch(() => undefined)
  }

  async increment(key: string): Promise<IncrementResponse> {
    if (this.link.isReady) {
      try {
        return await this.redis.increment(key)
      } catch (error) {
        this.link.fellBack('rateLimit', error)
      }
    } else {
      this.link.fellBack('rateLimit')
    }
    return this.memory.increment(key)
  }

  async decrement(key: string): Promise<void> {
    if (this.link.isReady) await this.redis.decrement(key).catch(() => undefined)
    await this.memory.decrement(key)
  }

  async resetKey(key: string): Promise<void> {
    if (this.link.isReady) await this.redis.resetKey(key).catch(() => undefined)
    await this.memory.resetKey(key)
  }

  shutdown(): void {
    void this.memory.shutdown()
  }
}

/**
 * rate-limit-redis's way to Redis. It loads its scripts once (SCRIPT LOAD at init) and
 * awaits that promise before every EVALSHA: a load that failed — Redis down at start-up —
 * would fail every later count. A script's SHA1 is that of its text, so a failed load
 * answers it anyway; once Redis is back, EVALSHA's NOSCRIPT makes the store load it.
 */
async function sendCommand(link: RedisLink, command: string, args: string[]): Promise<RedisReply> {
  try {
    return (await link.client.call(command, ...args)) as RedisReply
  } catch (error) {
    const script = args[1]
    if (command.toUpperCase() === 'SCRIPT' && args[0]?.toUpperCase() === 'LOAD' && script)
      return createHash('sha1').update(script).digest('hex')
    throw error
  }
}
