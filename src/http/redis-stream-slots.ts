// The stream caps shared by every instance (LIMITS_STORE=redis; docs/production.md, "Scaling
// out"). Each bucket (src/http/stream-slots.ts streamBucketsOf) is a Redis sorted set whose
// members are the open streams' leases, scored by their expiry on Redis's own clock, so the
// instances' clocks do not matter:
//   * acquire: one Lua script drops the expired members of every bucket of the caller,
//     checks each cap, and takes a slot in all of them or in none (atomic across buckets);
//   * renewal: every third of STREAM_SLOT_TTL_MS, one script call sets a new expiry on every
//     slot this instance holds; an instance that dies stops renewing, and its slots are free
//     again within STREAM_SLOT_TTL_MS (30 s by default) — leases, not counters that leak;
//   * release: one script call removes the stream's member from its buckets.
// While Redis does not answer, new streams are checked against this instance's own slots
// (the caps as without Redis) and open; no open stream is ever cut. The renewal writes every
// slot held here, those taken during the outage too, so the shared counts are whole again
// within a third of the TTL of Redis answering (at once on reconnect).
import { randomBytes } from 'node:crypto'
import type { Principal } from '../db/tenant-transaction.js'
import { TooManyRequestsError } from '../errors.js'
import { luaScript, type RedisLink } from './redis-link.js'
import { LeaseBook, groupByBucket, parseAcquireReply } from './slot-leases.js'
import {
  capRefusal,
  NO_SLOTS,
  slotLease,
  streamBucketsOf,
  type SlotLease,
  type StreamBucket,
  type StreamCaps,
  type StreamSlots,
} from './stream-slots.js'

// Redis's clock in ms. redis.replicate_commands() lets a script write after TIME on Redis
// 5 and 6 (7 always replicates effects).
const NOW = `
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`

// KEYS: the caller's buckets; ARGV[1]: TTL ms, ARGV[2]: the lease's member, ARGV[3…]: each
// bucket's cap. Returns {0, 0} when a slot was taken in every bucket, else {i, open} for the
// first full bucket (1-based), taking nothing.
const ACQUIRE = luaScript(`${NOW}
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local open = redis.call('ZCARD', key)
  if open >= tonumber(ARGV[i + 2]) then return {i, open} end
end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now + tonumber(ARGV[1]), ARGV[2])
  redis.call('PEXPIRE', key, ARGV[1])
end
return {0, 0}`)

// KEYS: buckets; ARGV[1]: TTL ms, then per bucket its member count and members
// (src/http/slot-leases.ts groupByBucket). Sets every member's expiry to now + TTL, adding
// the members Redis lost (a restart) or dropped (renewed too late). ZADD takes 100 members
// per call: unpack() has a limit of a few thousand values.
const RENEW = luaScript(`${NOW}
local expiry = now + tonumber(ARGV[1])
local a = 2
for _, key in ipairs(KEYS) do
  local n = tonumber(ARGV[a])
  local batch = {}
  for j = a + 1, a + n do
    batch[#batch + 1] = expiry
    batch[#batch + 1] = ARGV[j]
    if #batch == 200 then redis.call('ZADD', key, unpack(batch)); batch = {} end
  end
  if #batch > 0 then redis.call('ZADD', key, unpack(batch)) end
  redis.call('PEXPIRE', key, ARGV[1])
  a = a + n + 1
end
return a`)

// KEYS and ARGV as RENEW's without the TTL: removes the members.
const RELEASE = luaScript(`
local a = 1
for _, key in ipairs(KEYS) do
  local n = tonumber(ARGV[a])
  for j = a + 1, a + n do redis.call('ZREM', key, ARGV[j]) end
  a = a + n + 1
end
return a`)

export interface RedisStreamSlotsOptions {
  link: RedisLink
  caps: StreamCaps
  /** Prepended to every bucket's key (LIMITS_KEY_PREFIX + `streams:`). */
  prefix: string
  /** STREAM_SLOT_TTL_MS. */
  ttlMs: number
}

export class RedisStreamSlots implements StreamSlots {
  /** This process among the instances: the first part of every member it writes. */
  readonly instanceId = randomBytes(8).toString('hex')
  private readonly book = new LeaseBook(this.instanceId)
  private readonly timer: NodeJS.Timeout
  private renewing: Promise<void> | undefined

  constructor(private readonly options: RedisStreamSlotsOptions) {
    this.timer = setInterval(() => void this.renew(), Math.max(1, Math.floor(options.ttlMs / 3)))
    this.timer.unref()
    options.link.onReady(() => void this.renew())
  }

  /** Slots this instance holds in one bucket (`streamBucketsOf(…).key`). */
  count(bucketKey: string): number {
    return this.book.count(this.keyOf(bucketKey))
  }

  async acquire(principal: Principal): Promise<SlotLease> {
    const buckets = streamBucketsOf(principal, this.options.caps)
    if (buckets.length === 0) return NO_SLOTS // every cap of the caller is off
    const member = this.book.nextMember()
    const keys = buckets.map((b) => this.keyOf(b.key))
    await this.take(buckets, keys, member)
    this.book.add(member, keys)
    return slotLease(() => this.free(member))
  }

  /** Stops renewing and gives back whatever is still held. */
  async close(): Promise<void> {
    clearInterval(this.timer)
    await this.renewing
    const grouped = this.book.grouped()
    if (grouped.keys.length > 0 && this.options.link.isReady)
      await this.options.link.run(RELEASE, grouped.keys, grouped.args).catch(() => undefined)
  }

  private keyOf(bucketKey: string): string {
    return this.options.prefix + bucketKey
  }

  /** Takes the slots in Redis, or — Redis not answering — checks this instance's own. */
  private async take(buckets: StreamBucket[], keys: string[], member: string): Promise<void> {
    const { link } = this.options
    if (link.isReady) {
      try {
        const args = [String(this.options.ttlMs), member, ...buckets.map((b) => String(b.max))]
        const answer = parseAcquireReply(await link.run(ACQUIRE, keys, args))
        if (answer.fullIndex >= 0) this.refuse(buckets[answer.fullIndex]!, answer.open)
        return
      } catch (error) {
        if (error instanceof TooManyRequestsError) throw error
        link.fellBack('streamSlots', error)
      }
    } else {
      link.fellBack('streamSlots')
    }
    // A timed-out acquire may still have taken the slots: the lease then renews them as its
    // own, and a refused one's expire within the TTL.
    const full = this.book.firstFull(buckets, (b) => this.keyOf(b.key))
    if (full) this.refuse(full.bucket, full.open)
  }

  private refuse(bucket: StreamBucket, open: number): never {
    throw capRefusal(bucket, open)
  }

  private free(member: string): void {
    const keys = this.book.remove(member)
    if (!keys || !this.options.link.isReady) return
    // Not removed (Redis gone meanwhile): no longer renewed, it expires within the TTL.
    const { keys: grouped, args } = groupByBucket([[member, keys]])
    this.options.link.run(RELEASE, grouped, args).catch(() => undefined)
  }

  /** One script call for every slot held here (none in flight twice). */
  private renew(): Promise<void> {
    if (this.renewing || this.book.size === 0 || !this.options.link.isReady)
      return this.renewing ?? Promise.resolve()
    const { keys, args } = this.book.grouped()
    this.renewing = this.options.link
      .run(RENEW, keys, [String(this.options.ttlMs), ...args])
      .then(
        () => undefined,
        (error: unknown) => this.options.link.fellBack('streamSlots', error, false),
      )
      .finally(() => (this.renewing = undefined))
    return this.renewing
  }
}
