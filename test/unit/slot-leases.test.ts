// The bookkeeping behind the shared stream caps (src/http/slot-leases.ts): member names, the
// counts the caps fall back to without Redis, the grouping the Lua scripts read, and the
// acquire script's reply.
import { groupByBucket, LeaseBook, parseAcquireReply } from '../../src/http/slot-leases.js'
import type { StreamBucket } from '../../src/http/stream-slots.js'

const bucket = (key: string, max: number): StreamBucket => ({
  key,
  max,
  refusal: (n) => `${key} has ${n}`,
})

describe('LeaseBook', () => {
  it('names every lease uniquely, after its instance', () => {
    const a = new LeaseBook('aaaa')
    const b = new LeaseBook('bbbb')
    const names = [a.nextMember(), a.nextMember(), b.nextMember(), b.nextMember()]
    expect(new Set(names).size).toBe(4)
    expect(names[0]).toMatch(/^aaaa:/)
    expect(names[2]).toMatch(/^bbbb:/)
  })

  it('counts the slots it holds per bucket, and forgets a lease once', () => {
    const book = new LeaseBook('i')
    book.add('i:1', ['u', 't'])
    book.add('i:2', ['u', 't'])
    book.add('i:3', ['w'])
    expect([book.count('u'), book.count('t'), book.count('w'), book.size]).toEqual([2, 2, 1, 3])
    expect(book.remove('i:1')).toEqual(['u', 't'])
    expect(book.remove('i:1')).toBeUndefined()
    expect([book.count('u'), book.count('t'), book.size]).toEqual([1, 1, 2])
    book.remove('i:2')
    book.remove('i:3')
    expect([book.count('u'), book.count('w'), book.size]).toEqual([0, 0, 0])
  })

  it('refuses to hold one lease twice', () => {
    const book = new LeaseBook('i')
    book.add('i:1', ['u'])
    expect(() => book.add('i:1', ['u'])).toThrow(/already held/)
  })

  it('names the first bucket it has filled by itself (the cap without Redis)', () => {
    const book = new LeaseBook('i')
    const keyOf = (b: StreamBucket) => `p:${b.key}`
    const buckets = [bucket('u', 2), bucket('t', 3)]
    book.add('i:1', ['p:u', 'p:t'])
    expect(book.firstFull(buckets, keyOf)).toBeUndefined()
    book.add('i:2', ['p:u', 'p:t'])
    expect(book.firstFull(buckets, keyOf)).toEqual({ bucket: buckets[0], open: 2 })
    book.add('i:3', ['p:t'])
    expect(book.firstFull([bucket('v', 5), buckets[1]!], keyOf)).toEqual({
      bucket: buckets[1],
      open: 3,
    })
  })

  it('groups every held lease by bucket, as the renewal script reads them', () => {
    const book = new LeaseBook('i')
    book.add('i:1', ['u1', 't'])
    book.add('i:2', ['u2', 't'])
    book.add('i:3', ['w'])
    book.add('i:4', ['u1', 't'])
    book.remove('i:4')
    expect(book.grouped()).toEqual({
      keys: ['u1', 't', 'u2', 'w'],
      args: ['1', 'i:1', '2', 'i:1', 'i:2', '1', 'i:2', '1', 'i:3'],
    })
    expect(new LeaseBook('i').grouped()).toEqual({ keys: [], args: [] })
  })
})

describe('groupByBucket', () => {
  it('gives one lease its buckets with a count of one each', () => {
    expect(groupByBucket([['m', ['a', 'b']]])).toEqual({
      keys: ['a', 'b'],
      args: ['1', 'm', '1', 'm'],
    })
  })

  it('reads back to the same members per bucket, however many', () => {
    const leases = Array.from(
      { length: 250 },
      (_, i) => [`m${i}`, i % 2 ? ['odd', 'all'] : ['all']] as const,
    )
    const { keys, args } = groupByBucket(leases)
    const read = new Map<string, string[]>()
    let a = 0
    for (const key of keys) {
      const n = Number(args[a])
      read.set(key, args.slice(a + 1, a + 1 + n))
      a += n + 1
    }
    expect(a).toBe(args.length)
    expect(read.get('all')).toHaveLength(250)
    expect(read.get('odd')).toEqual(leases.filter((_, i) => i % 2).map(([m]) => m))
  })
})

describe('parseAcquireReply', () => {
  it('reads a taken slot and a full bucket', () => {
    expect(parseAcquireReply([0, 0])).toEqual({ fullIndex: -1, open: 0 })
    expect(parseAcquireReply([2, 7])).toEqual({ fullIndex: 1, open: 7 })
  })

  it('refuses anything else', () => {
    expect(() => parseAcquireReply('OK')).toThrow(TypeError)
    expect(() => parseAcquireReply([1])).toThrow(TypeError)
    expect(() => parseAcquireReply(['x', 1])).toThrow(TypeError)
  })
})
