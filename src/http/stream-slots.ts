// Owns the caps on concurrent streams (SSE, WebSocket, parked long-polls). A stream takes one
// slot in each bucket of its caller before its authorising read and keeps them until it
// closes, so parallel opens, each awaiting its read, cannot overrun a cap. Buckets:
//   * a user token: its user (MAX_STREAMS_PER_USER) and its tenant (MAX_STREAMS_PER_TENANT);
//   * a watch token (a share link): its job (MAX_STREAMS_PER_WATCH_JOB) and nothing else, so
//     traffic through a link can never use up its owner's or its tenant's share
//     (docs/decisions.md, "Watch tokens have their own buckets").
// A cap of 0 is off. The counts live in this process (MemoryStreamSlots), or for a cluster's
// workers in its primary (src/cluster/stream-slots.ts).
import type { Config } from '../config/index.js'
import type { Principal } from '../db/tenant-transaction.js'
import { TooManyRequestsError } from '../errors.js'

/** Seconds a client refused for a full cap is told to wait (Retry-After). */
const CAP_RETRY_SECONDS = 5

export type StreamCaps = Pick<
  Config,
  'MAX_STREAMS_PER_USER' | 'MAX_STREAMS_PER_TENANT' | 'MAX_STREAMS_PER_WATCH_JOB'
>

export interface StreamBucket {
  key: string
  max: number
  /** The 429's detail when the bucket is full with `open` streams. */
  refusal(open: number): string
}

/** The buckets a caller's streams count in (caps of 0 left out). */
export function streamBucketsOf(principal: Principal, caps: StreamCaps): StreamBucket[] {
  const buckets: StreamBucket[] =
    principal.jobId !== undefined
      ? [
          {
            key: `w:${principal.jobId}`,
            max: caps.MAX_STREAMS_PER_WATCH_JOB,
            refusal: (n) =>
              `This job already has ${n} open streams through watch tokens (the limit is ${caps.MAX_STREAMS_PER_WATCH_JOB}); close one first.`,
          },
        ]
      : [
          {
            key: `u:${principal.tenantId}:${principal.userId}`,
            max: caps.MAX_STREAMS_PER_USER,
            refusal: (n) =>
              `You already have ${n} open streams (the limit is ${caps.MAX_STREAMS_PER_USER}); close one first.`,
          },
          {
            key: `t:${principal.tenantId}`,
            max: caps.MAX_STREAMS_PER_TENANT,
            refusal: (n) =>
              `Your tenant already has ${n} open streams (the limit is ${caps.MAX_STREAMS_PER_TENANT}).`,
          },
        ]
  return buckets.filter((b) => b.max > 0)
}

/**
 * One stream's slots. The opening code holds it until the stream is registered; the stream
 * registry then hold()s it and frees it when the stream leaves. release() frees it unless
 * it is held, so the opening code can call it in a `finally` whatever happened.
 */
export interface SlotLease {
  /** Takes ownership; the returned function frees the slots (once). */
  hold(): () => void
  release(): void
}

/** For a request that opens no stream (HEAD on a stream route): takes and frees nothing. */
export const NO_SLOTS: SlotLease = Object.freeze({
  hold: () => () => undefined,
  release: () => undefined,
})

export interface StreamSlots {
  /** One slot in every bucket of the caller, or TooManyRequestsError and none taken. */
  acquire(principal: Principal): Promise<SlotLease>
}

/**
 * Open streams per bucket key: the bookkeeping of every slot store (this process's, and the
 * cluster primary's for its workers).
 */
export class SlotCounts {
  private readonly open = new Map<string, number>()

  count(key: string): number {
    return this.open.get(key) ?? 0
  }

  /** Takes one slot in every bucket, or none: returns the index of the full bucket, or -1. */
  tryTake(buckets: ReadonlyArray<{ key: string; max: number }>): number {
    const full = buckets.findIndex(({ key, max }) => this.count(key) >= max)
    if (full >= 0) return full
    for (const { key } of buckets) this.open.set(key, this.count(key) + 1)
    return -1
  }

  free(keys: readonly string[]): void {
    for (const key of keys) {
      const n = this.count(key) - 1
      if (n > 0) this.open.set(key, n)
      else this.open.delete(key)
    }
  }
}

/** A lease whose slots `free` gives back, once, by its holder or by release() if unheld. */
export function slotLease(free: () => void): SlotLease {
  let isFreed = false
  let isHeld = false
  const freeOnce = () => {
    if (isFreed) return
    isFreed = true
    free()
  }
  return {
    hold: () => {
      isHeld = true
      return freeOnce
    },
    release: () => {
      if (!isHeld) freeOnce()
    },
  }
}

/** The 429 for a caller whose `bucket` is full with `open` streams. */
export function capRefusal(bucket: StreamBucket, open: number): TooManyRequestsError {
  return new TooManyRequestsError(bucket.refusal(open), CAP_RETRY_SECONDS)
}

/** Slots counted in this process. */
export class MemoryStreamSlots implements StreamSlots {
  private readonly counts = new SlotCounts()

  constructor(private readonly caps: StreamCaps) {}

  /** Slots taken in one bucket (for tests and metrics). */
  count(key: string): number {
    return this.counts.count(key)
  }

  acquire(principal: Principal): Promise<SlotLease> {
    const buckets = streamBucketsOf(principal, this.caps)
    const full = this.counts.tryTake(buckets)
    if (full >= 0) {
      const bucket = buckets[full]!
      return Promise.reject(capRefusal(bucket, this.counts.count(bucket.key)))
    }
    // The lease lives as long as its stream: it keeps the keys, not the buckets.
    const keys = buckets.map((b) => b.key)
    return Promise.resolve(slotLease(() => this.counts.free(keys)))
  }
}

/** Counts the refusals of `slots` (the stream-cap metric), whatever store it is. */
export function countingRefusals(slots: StreamSlots, onRefused: () => void): StreamSlots {
  return {
    acquire: (principal) =>
      slots.acquire(principal).catch((error: unknown) => {
        if (error instanceof TooManyRequestsError) onRefused()
        throw error
      }),
  }
}
