// The concurrent-stream caps: which buckets a caller's streams count in, that a full bucket
// refuses without taking anything, and that a lease is freed exactly once, by its holder.
import {
  countingRefusals,
  MemoryStreamSlots,
  streamBucketsOf,
} from '../../src/http/stream-slots.js'
import { TooManyRequestsError } from '../../src/errors.js'

const caps = { MAX_STREAMS_PER_USER: 2, MAX_STREAMS_PER_TENANT: 3, MAX_STREAMS_PER_WATCH_JOB: 1 }
const TENANT = '0a1b2c3d-4e5f-4a6b-9c8d-7e6f5a4b3c2d'
const JOB = '00000000-0000-4000-8000-000000000001'
const alice = { tenantId: TENANT, userId: 'alice', role: 'member' as const }
const bob = { tenantId: TENANT, userId: 'bob', role: 'member' as const }
const link = { ...alice, jobId: JOB }

describe('streamBucketsOf', () => {
  it('puts a user token in its user and tenant buckets', () => {
    expect(streamBucketsOf(alice, caps).map((b) => [b.key, b.max])).toEqual([
      [`u:${TENANT}:alice`, 2],
      [`t:${TENANT}`, 3],
    ])
  })

  it("puts a watch token in its job's bucket only, not its owner's", () => {
    expect(streamBucketsOf(link, caps).map((b) => [b.key, b.max])).toEqual([[`w:${JOB}`, 1]])
  })

  it('leaves out caps of 0', () => {
    expect(streamBucketsOf(alice, { ...caps, MAX_STREAMS_PER_USER: 0 })).toHaveLength(1)
  })
})

describe('MemoryStreamSlots', () => {
  it('refuses the stream past a full bucket, takes nothing for it, and counts rejections', async () => {
    let rejected = 0
    const memory = new MemoryStreamSlots(caps)
    const slots = countingRefusals(memory, () => rejected++)
    await slots.acquire(alice)
    await slots.acquire(alice)
    await expect(slots.acquire(alice)).rejects.toBeInstanceOf(TooManyRequestsError)
    await expect(slots.acquire(alice)).rejects.toThrow(/You already have 2 open streams/)
    expect(memory.count(`t:${TENANT}`)).toBe(2)
    await slots.acquire(bob)
    await expect(slots.acquire(bob)).rejects.toThrow(/Your tenant already has 3/)
    expect(memory.count(`u:${TENANT}:bob`)).toBe(1)
    expect(rejected).toBe(3)
  })

  it('keeps a link and its owner apart', async () => {
    const slots = new MemoryStreamSlots(caps)
    await slots.acquire(link)
    await expect(slots.acquire(link)).rejects.toThrow(/through watch tokens/)
    await slots.acquire(alice)
    await slots.acquire(alice)
    expect(slots.count(`w:${JOB}`)).toBe(1)
  })

  it('frees on release() unless held; a holder frees once', async () => {
    const slots = new MemoryStreamSlots(caps)
    const unused = await slots.acquire(alice)
    unused.release()
    unused.release()
    expect(slots.count(`u:${TENANT}:alice`)).toBe(0)

    const held = await slots.acquire(alice)
    const free = held.hold()
    held.release() // the opening code's finally: the holder owns it now
    expect(slots.count(`u:${TENANT}:alice`)).toBe(1)
    free()
    free()
    expect(slots.count(`u:${TENANT}:alice`)).toBe(0)
    expect(slots.count(`t:${TENANT}`)).toBe(0)
  })
})
