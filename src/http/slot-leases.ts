// The stream slots this instance holds in Redis (src/http/redis-stream-slots.ts), kept in
// memory: each lease is one member, named `<instance>:<n>`, of the sorted set of every bucket
// of its caller. The book says what the periodic renewal sends (every held member, grouped
// by bucket) and counts the slots per bucket that the caps fall back to while Redis does not
// answer. Pure bookkeeping: no I/O, no clock.
import type { StreamBucket } from './stream-slots.js'

/**
 * Members grouped by bucket as the Lua scripts read them: KEYS is the buckets, ARGV holds,
 * per bucket in the same order, its member count followed by its members.
 */
export interface GroupedMembers {
  keys: string[]
  args: string[]
}

export function groupByBucket(
  leases: Iterable<readonly [member: string, keys: readonly string[]]>,
): GroupedMembers {
  const byKey = new Map<string, string[]>()
  for (const [member, keys] of leases) {
    for (const key of keys) {
      const members = byKey.get(key)
      if (members) members.push(member)
      else byKey.set(key, [member])
    }
  }
  const grouped: GroupedMembers = { keys: [], args: [] }
  for (const [key, members] of byKey) {
    grouped.keys.push(key)
    grouped.args.push(String(members.length), ...members)
  }
  return grouped
}

/** The acquire script's answer: 0 when every slot was taken, else the full bucket. */
export interface AcquireAnswer {
  /** Index into the caller's buckets of the first full one; -1 when the slots were taken. */
  fullIndex: number
  /** Slots open in that bucket (live members only). */
  open: number
}

/** Reads the acquire script's `{index, open}` reply (index 1-based, 0: taken). */
export function parseAcquireReply(reply: unknown): AcquireAnswer {
  if (!Array.isArray(reply) || reply.length !== 2)
    throw new TypeError(`unexpected reply from the stream-slot script: ${JSON.stringify(reply)}`)
  const [index, open] = reply.map(Number) as [number, number]
  if (!Number.isInteger(index) || !Number.isInteger(open))
    throw new TypeError(`unexpected reply from the stream-slot script: ${JSON.stringify(reply)}`)
  return { fullIndex: index - 1, open }
}

export class LeaseBook {
  /** member → the Redis keys of its buckets. */
  private readonly leases = new Map<string, readonly string[]>()
  private readonly counts = new Map<string, number>()
  private sequence = 0

  constructor(private readonly instanceId: string) {}

  /** Leases held. */
  get size(): number {
    return this.leases.size
  }

  /** A member name no other lease of any instance has. */
  nextMember(): string {
    return `${this.instanceId}:${(++this.sequence).toString(36)}`
  }

  add(member: string, keys: readonly string[]): void {
    if (this.leases.has(member)) throw new Error(`lease ${member} is already held`)
    this.leases.set(member, keys)
    for (const key of keys) this.counts.set(key, (this.counts.get(key) ?? 0) + 1)
  }

  /** Forgets a lease; its keys, or undefined when it was not held. */
  remove(member: string): readonly string[] | undefined {
    const keys = this.leases.get(member)
    if (!keys) return undefined
    this.leases.delete(member)
    for (const key of keys) {
      const n = (this.counts.get(key) ?? 0) - 1
      if (n > 0) this.counts.set(key, n)
      else this.counts.delete(key)
    }
    return keys
  }

  /** Slots this instance holds in one bucket (by Redis key). */
  count(key: string): number {
    return this.counts.get(key) ?? 0
  }

  /** The first bucket this instance alone has filled, with its count: the local cap check. */
  firstFull(
    buckets: readonly StreamBucket[],
    keyOf: (bucket: StreamBucket) => string,
  ): { bucket: StreamBucket; open: number } | undefined {
    for (const bucket of buckets) {
      const open = this.count(keyOf(bucket))
      if (open >= bucket.max) return { bucket, open }
    }
    return undefined
  }

  /** Every held lease, grouped for the renewal script. */
  grouped(): GroupedMembers {
    return groupByBucket(this.leases)
  }
}
