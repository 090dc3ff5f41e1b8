// The shared stream caps' Lua scripts and leases (src/http/redis-stream-slots.ts) against the
// machine's real Redis: several "instances" (each its own connection and lease book) share
// one key prefix of this file's own.
import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import { TooManyRequestsError } from '../../src/errors.js'
import { RedisLink } from '../../src/http/redis-link.js'
import { RedisStreamSlots } from '../../src/http/redis-stream-slots.js'
import type { StreamCaps } from '../../src/http/stream-slots.js'
import { createLogger } from '../../src/telemetry/logger.js'
import { deleteKeys, freePort, REDIS_URL, requiresRedis, testKeyPrefix } from '../helpers/redis.js'

const { describe } = await requiresRedis(import.meta.url)

const PREFIX = `${testKeyPrefix()}streams:`
const logger = createLogger({ level: 'silent', pretty: false })
const caps: StreamCaps = {
  MAX_STREAMS_PER_USER: 2,
  MAX_STREAMS_PER_TENANT: 3,
  MAX_STREAMS_PER_WATCH_JOB: 1,
}
const started: Array<{ link: RedisLink; slots: RedisStreamSlots }> = []
let admin: Redis

async function instance(
  options: { ttlMs?: number; caps?: StreamCaps; url?: string } = {},
): Promise<{ link: RedisLink; slots: RedisStreamSlots }> {
  const link = new RedisLink(options.url ?? REDIS_URL, logger)
  const slots = new RedisStreamSlots({
    link,
    caps: options.caps ?? caps,
    prefix: PREFIX,
    ttlMs: options.ttlMs ?? 60_000,
  })
  started.push({ link, slots })
  await link.start()
  return { link, slots }
}

function principals() {
  const tenantId = randomUUID()
  return {
    tenantId,
    alice: { tenantId, userId: 'alice', role: 'member' as const },
    bob: { tenantId, userId: 'bob', role: 'member' as const },
  }
}

/** Live members of one bucket, on Redis's clock. */
async function live(key: string): Promise<number> {
  const [seconds, micros] = await admin.time()
  return admin.zcount(
    PREFIX + key,
    Number(seconds) * 1000 + Math.floor(Number(micros) / 1000) + 1,
    '+inf',
  )
}

async function eventually(check: () => Promise<boolean>, what: string, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 25))
  }
}

describe('shared stream slots in Redis', () => {
  beforeAll(() => {
    admin = new Redis(REDIS_URL)
  })
  afterAll(async () => {
    for (const { link, slots } of started) {
      await slots.close()
      await link.close()
    }
    await deleteKeys(admin, PREFIX)
    await admin.quit()
  })

  it('takes a slot in every bucket of the caller across instances, or in none', async () => {
    const [a, b] = [await instance(), await instance()]
    const t = principals()
    const first = await a.slots.acquire(t.alice)
    await b.slots.acquire(t.alice)
    await expect(a.slots.acquire(t.alice)).rejects.toThrow(/You already have 2 open streams/)
    await expect(b.slots.acquire(t.alice)).rejects.toBeInstanceOf(TooManyRequestsError)
    await b.slots.acquire(t.bob)
    // The tenant is full: Bob's refused stream takes nothing in his own bucket either.
    await expect(a.slots.acquire(t.bob)).rejects.toThrow(/Your tenant already has 3/)
    expect(await live(`u:${t.tenantId}:bob`)).toBe(1)
    expect(await live(`t:${t.tenantId}`)).toBe(3)
    // Freed on one instance, taken on the other.
    first.hold()()
    await eventually(async () => (await live(`t:${t.tenantId}`)) === 2, 'the slot to be freed')
    await b.slots.acquire(t.bob)
    expect(await live(`u:${t.tenantId}:bob`)).toBe(2)
  })

  it('holds every slot past its TTL while its instance renews them', async () => {
    const holder = await instance({ ttlMs: 1000 })
    const other = await instance()
    const t = principals()
    await holder.slots.acquire(t.alice)
    await holder.slots.acquire(t.alice)
    const key = PREFIX + `u:${t.tenantId}:alice`
    const [firstExpiry] = (await admin.zrange(key, '0', '0', 'WITHSCORES')).slice(1).map(Number)
    // A renewal scored later than the first expiry plus a TTL ran after the first expiry had
    // passed, and found both slots held.
    await eventually(
      async () =>
        Number((await admin.zrange(key, '0', '0', 'WITHSCORES'))[1]) > firstExpiry! + 1000,
      'a renewal after the first expiry',
    )
    expect(await live(`u:${t.tenantId}:alice`)).toBe(2)
    await expect(other.slots.acquire(t.alice)).rejects.toThrow(/You already have 2/)
  })

  it('frees the slots of an instance that stopped renewing within the TTL', async () => {
    const lost = await instance({ ttlMs: 1000 })
    const other = await instance()
    const t = principals()
    await lost.slots.acquire(t.alice)
    await lost.slots.acquire(t.alice)
    await expect(other.slots.acquire(t.alice)).rejects.toThrow(/You already have 2/)
    // Cut off from Redis (as a dead or partitioned instance is): no renewal, no release.
    lost.link.client.disconnect()
    await eventually(
      async () => (await live(`u:${t.tenantId}:alice`)) === 0,
      'the lost slots to expire',
      1000 + 5000,
    )
    await other.slots.acquire(t.alice)
    await other.slots.acquire(t.alice)
    await expect(other.slots.acquire(t.alice)).rejects.toThrow(/You already have 2/)
    // The expired members are gone from the set itself, not only out of the count.
    expect(await admin.zcard(PREFIX + `u:${t.tenantId}:alice`)).toBe(2)
  })

  it('writes back the slots Redis lost, thousands in one renewal', async () => {
    const many: StreamCaps = {
      MAX_STREAMS_PER_USER: 0,
      MAX_STREAMS_PER_TENANT: 10_000,
      MAX_STREAMS_PER_WATCH_JOB: 0,
    }
    const holder = await instance({ ttlMs: 1500, caps: many })
    const t = principals()
    // 5,000 members in one ZADD would be 10,000 values: past what Lua's unpack() takes.
    for (let i = 0; i < 50; i++)
      await Promise.all(Array.from({ length: 100 }, () => holder.slots.acquire(t.alice)))
    expect(await live(`t:${t.tenantId}`)).toBe(5000)
    await admin.del(PREFIX + `t:${t.tenantId}`) // as a restart without persistence does
    await eventually(
      async () => (await live(`t:${t.tenantId}`)) === 5000,
      'the renewal to write the slots back',
    )
    expect(holder.slots.count(`t:${t.tenantId}`)).toBe(5000)
  })

  it("counts this instance's own slots while Redis does not answer", async () => {
    const port = await freePort()
    const alone = await instance({ url: `redis://127.0.0.1:${port}` })
    expect(alone.link.isReady).toBe(false)
    const t = principals()
    const first = await alone.slots.acquire(t.alice)
    await alone.slots.acquire(t.alice)
    await expect(alone.slots.acquire(t.alice)).rejects.toThrow(/You already have 2 open streams/)
    expect(alone.link.fallbacks.streamSlots).toBe(3)
    first.release()
    expect(alone.slots.count(`u:${t.tenantId}:alice`)).toBe(1)
    await alone.slots.acquire(t.alice)
    // A watch token's bucket, and nothing else.
    const link = { ...t.alice, jobId: randomUUID() }
    await alone.slots.acquire(link)
    await expect(alone.slots.acquire(link)).rejects.toThrow(/through watch tokens/)
  })
})
