// Owns the optional Redis bridge (docs/contract.md §11).
//   Outbound (BRIDGE_OUTBOUND): every job event is published to `jobs:{jobId}:events` in the
//   `events` vocabulary. Every instance watches every job (a global hub feed: each change is
//   read once per instance in the usual batches) and publishes through a Lua script that
//   keeps the job's last published version in Redis and publishes only a newer one: each
//   version goes out once and in order, with any number of instances and no leader whose
//   failover would drop events. Changes that arrive together may be read as one (like a
//   stream's merged patch): their events then describe the step from the last published
//   version. The version keys expire after 10 minutes.
//   Inbound (BRIDGE_INBOUND, opt-in): reports that legacy workers publish on the same channels
//   are validated and applied to the row with jobwire_apply_external(); the resulting NOTIFY
//   reaches every watcher. Messages marked `origin: "jobwire"` are ours and never re-applied
//   (no echo loop). One instance applies them: the holder of a Redis lease
//   (`SET NX PX` 15 s, renewed every 5 s), so that several instances do not replay each
//   message. If the holder dies, reports published until another instance takes the lease
//   (at most ~20 s) are not applied: pub/sub keeps nothing for absent subscribers.
// Redis down never blocks the API: commands fail fast (no offline queue), ioredis reconnects,
// and /readyz reports the bridge as degraded, not failed. Events published while Redis is
// down are lost for Redis subscribers (jobwire's own streams are unaffected).
import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import { sql } from 'kysely'
import type { Db } from '../db/pool.js'
import type { Hub, JobChange } from '../events/hub.js'
import { typedEvents } from '../events/typed-events.js'
import type { Logger } from '../telemetry/logger.js'
import {
  CHANNEL_PATTERN,
  channelFor,
  inboundSchema,
  jobIdFromChannel,
  ORIGIN,
  deletionMessage,
  outboundMessage,
  toRowUpdate,
} from './messages.js'

const GUARD_TTL_MS = 10 * 60 * 1000
const LEASE_KEY = 'jobwire:bridge:inbound-lease'
const LEASE_TTL_MS = 15_000
const LEASE_RENEW_MS = 5_000

// Publishes a change's events unless a newer (or the same) version of the job was already
// published by any instance: per job, versions go out once and in order. KEYS[1]: the job's
// last published version; ARGV[1]: channel, ARGV[2]: version, ARGV[3]: TTL ms, ARGV[4..]:
// the messages.
const PUBLISH_ONCE = `
local last = redis.call('GET', KEYS[1])
if last == 'deleted' then return 0 end
if tonumber(ARGV[2]) <= tonumber(last or '0') then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
for i = 4, #ARGV do redis.call('PUBLISH', ARGV[1], ARGV[i]) end
return #ARGV - 3`

// Publishes a job's deletion once, whichever instance saw it first; nothing of the job is
// published after it. KEYS[1]: as above; ARGV[1]: channel, ARGV[2]: TTL ms, ARGV[3]: message.
const PUBLISH_DELETION = `
if redis.call('GET', KEYS[1]) == 'deleted' then return 0 end
redis.call('SET', KEYS[1], 'deleted', 'PX', ARGV[2])
redis.call('PUBLISH', ARGV[1], ARGV[3])
return 1`

// Renews the lease only for its holder. KEYS[1]: lease, ARGV[1]: holder, ARGV[2]: TTL.
const RENEW_LEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0`

export interface BridgeOptions {
  redisUrl: string
  outbound: boolean
  inbound: boolean
  hub: Hub
  db: Db
  logger: Logger
}

export class BridgeStats {
  published = 0
  publishErrors = 0
  received = 0
  applied = 0
  rejected = 0
  echoes = 0
}

export class RedisBridge {
  readonly stats = new BridgeStats()
  readonly instanceId = randomUUID()
  private readonly publisher: Redis
  private subscriber: Redis | undefined
  private unwatch: (() => void) | undefined
  private leaseTimer: NodeJS.Timeout | undefined
  private isLeader = false

  constructor(private readonly options: BridgeOptions) {
    const common = {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      // Reconnect delays (ms): 100, 200, 400, … capped at 5000, for as long as it takes.
      retryStrategy: (times: number) => Math.min(100 * 2 ** Math.min(times, 6), 5000),
    }
    this.publisher = new Redis(options.redisUrl, { ...common, connectionName: 'jobwire-bridge' })
    this.publisher.on('error', (error) =>
      options.logger.debug({ err: error }, 'redis bridge connection error'),
    )
  }

  /** `ok` when Redis answers, `degraded` otherwise (the API keeps serving). */
  get status(): 'ok' | 'degraded' {
    return this.publisher.status === 'ready' ? 'ok' : 'degraded'
  }

  async start(): Promise<void> {
    // Do not wait for Redis: it may be down at start-up and the API must come up regardless.
    this.publisher
      .connect()
      .catch((error: unknown) =>
        this.options.logger.warn({ err: error }, 'redis bridge: Redis is not reachable yet'),
      )
    if (this.options.outbound) {
      this.unwatch = this.options.hub.watchAll({
        ownerId: undefined,
        onChange: (change) => this.publish(change),
        onGone: (jobId, version) => this.publishDeletion(jobId, version),
      })
    }
    if (this.options.inbound) {
      const subscriber = this.publisher.duplicate({
        connectionName: 'jobwire-bridge-sub',
        enableOfflineQueue: true,
      })
      this.subscriber = subscriber
      subscriber.on('error', (error) =>
        this.options.logger.debug({ err: error }, 'redis bridge subscriber error'),
      )
      subscriber.on(
        'pmessage',
        (_pattern: string, channel: string, message: string) => void this.receive(channel, message),
      )
      subscriber
        .connect()
        .catch((error: unknown) =>
          this.options.logger.warn({ err: error }, 'redis bridge: subscriber not connected yet'),
        )
      // ioredis re-subscribes after every reconnect.
      subscriber
        .psubscribe(CHANNEL_PATTERN)
        .catch((error: unknown) =>
          this.options.logger.warn({ err: error }, 'redis bridge: psubscribe failed'),
        )
      this.publisher.on('ready', () => void this.renewLease())
      this.leaseTimer = setInterval(() => void this.renewLease(), LEASE_RENEW_MS)
      this.leaseTimer.unref()
      void this.renewLease()
    }
  }

  async stop(): Promise<void> {
    this.unwatch?.()
    clearInterval(this.leaseTimer)
    if (this.isLeader)
      await this.publisher
        .eval(
          `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`,
          1,
          LEASE_KEY,
          this.instanceId,
        )
        .catch(() => undefined)
    this.subscriber?.disconnect()
    this.publisher.disconnect()
  }

  private publish(change: JobChange): void {
    const { doc, previous } = change
    const events = typedEvents(previous, doc)
    if (events.length === 0 || this.publisher.status !== 'ready') {
      if (events.length > 0) this.stats.publishErrors++
      return
    }
    const messages = events.map((e) => JSON.stringify(outboundMessage(doc.id, doc.version, e)))
    this.publisher
      .eval(
        PUBLISH_ONCE,
        1,
        `jobwire:published:{${doc.id}}`,
        channelFor(doc.id),
        doc.version,
        GUARD_TTL_MS,
        ...messages,
      )
      .then(
        (count) => (this.stats.published += Number(count)),
        (error: unknown) => {
          this.stats.publishErrors++
          this.options.logger.warn({ err: error, job: doc.id }, 'redis bridge: publish failed')
        },
      )
  }

  private publishDeletion(jobId: string, version: number): void {
    if (this.publisher.status !== 'ready') {
      this.stats.publishErrors++
      return
    }
    this.publisher
      .eval(
        PUBLISH_DELETION,
        1,
        `jobwire:published:{${jobId}}`,
        channelFor(jobId),
        GUARD_TTL_MS,
        JSON.stringify(deletionMessage(jobId, version)),
      )
      .then(
        (count) => (this.stats.published += Number(count)),
        (error: unknown) => {
          this.stats.publishErrors++
          this.options.logger.warn({ err: error, job: jobId }, 'redis bridge: publish failed')
        },
      )
  }

  private async renewLease(): Promise<void> {
    try {
      const result = await this.publisher.eval(
        RENEW_LEASE,
        1,
        LEASE_KEY,
        this.instanceId,
        LEASE_TTL_MS,
      )
      this.isLeader = Number(result) === 1
    } catch {
      this.isLeader = false
    }
  }

  private async receive(channel: string, raw: string): Promise<void> {
    this.stats.received++
    const jobId = jobIdFromChannel(channel)
    let parsed: unknown
    try {
      parsed = JSON.parse(raw)
    } catch {
      parsed = undefined
    }
    if (
      typeof parsed === 'object' &&
      parsed !== null &&
      (parsed as { origin?: unknown }).origin === ORIGIN
    ) {
      this.stats.echoes++
      return
    }
    if (!this.isLeader) return
    const result = inboundSchema.safeParse(parsed)
    if (!jobId || !result.success) {
      this.stats.rejected++
      this.options.logger.warn(
        {
          channel,
          reason: jobId ? result.error?.issues[0]?.message : 'channel is not jobs:<uuid>:events',
        },
        'redis bridge: rejected an inbound message',
      )
      return
    }
    const update = toRowUpdate(result.data)
    if (!update) return
    try {
      await sql`SELECT 1 FROM jobwire_apply_external(
        ${jobId}::uuid, ${update.status}, ${update.progress}::double precision, ${update.step},
        ${update.etaSeconds}::integer, ${update.result === undefined ? null : JSON.stringify(update.result)}::jsonb,
        ${update.error === null ? null : JSON.stringify(update.error)}::jsonb)`.execute(
        this.options.db,
      )
      this.stats.applied++
    } catch (error) {
      this.stats.rejected++
      this.options.logger.warn(
        { err: error, job: jobId },
        'redis bridge: could not apply an inbound message',
      )
    }
  }
}
