import { VerifiedTokenCache } from '../../src/http/token-cache.js'

const principal = {
  tenantId: '00000000-0000-4000-8000-000000000001',
  userId: 'u',
  role: 'admin' as const,
}

describe('VerifiedTokenCache', () => {
  it('answers until the token expires, then forgets it', () => {
    const cache = new VerifiedTokenCache()
    const now = 1_000_000_000_000
    cache.set('t', principal, now / 1000 + 60, now)
    expect(cache.get('t', now + 59_999)).toEqual(principal)
    expect(cache.get('t', now + 60_000)).toBeUndefined()
  })

  it('keeps no entry longer than five minutes, even for a token without exp', () => {
    const cache = new VerifiedTokenCache()
    const now = 1_000_000_000_000
    cache.set('long', principal, now / 1000 + 86_400, now)
    cache.set('no-exp', principal, undefined, now)
    expect(cache.get('long', now + 5 * 60_000 - 1)).toEqual(principal)
    expect(cache.get('long', now + 5 * 60_000)).toBeUndefined()
    expect(cache.get('no-exp', now + 5 * 60_000)).toBeUndefined()
  })

  it('does not keep an already expired token and never answers for an unknown one', () => {
    const cache = new VerifiedTokenCache()
    const now = 1_000_000_000_000
    cache.set('old', principal, now / 1000 - 1, now)
    expect(cache.get('old', now)).toBeUndefined()
    expect(cache.get('other', now)).toBeUndefined()
  })

  it('drops the oldest entries beyond 10,000 tokens', () => {
    const cache = new VerifiedTokenCache()
    const now = 1_000_000_000_000
    for (let i = 0; i <= 10_000; i++) cache.set(`t${i}`, principal, undefined, now)
    expect(cache.get('t0', now)).toBeUndefined()
    expect(cache.get('t10000', now)).toEqual(principal)
  })
})
