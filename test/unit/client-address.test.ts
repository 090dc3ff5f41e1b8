// Which address is the client: the socket's peer unless TRUST_PROXY trusts it, for express
// and the raw upgrade path alike; and the per-IP limit of failed authentications keyed on it.
import type { IncomingMessage } from 'node:http'
import { clientAddressOf, compileTrustProxy } from '../../src/http/client-address.js'
import { createRateLimits } from '../../src/http/rate-limit.js'
import { TooManyRequestsError } from '../../src/errors.js'

/** What an upgrade handler sees: the headers and the socket's peer. */
function request(peer: string | undefined, forwardedFor?: string): IncomingMessage {
  return {
    headers: forwardedFor === undefined ? {} : { 'x-forwarded-for': forwardedFor },
    socket: { remoteAddress: peer },
  } as unknown as IncomingMessage
}

const clientOf = (trustProxy: string, peer: string | undefined, forwardedFor?: string) =>
  clientAddressOf(request(peer, forwardedFor), compileTrustProxy(trustProxy))

describe('clientAddressOf', () => {
  it('ignores X-Forwarded-For from a local client when no proxy is trusted (the default)', () => {
    expect(clientOf('false', '127.0.0.1', '203.0.113.9')).toBe('127.0.0.1')
    expect(clientOf('false', '::1', '203.0.113.9')).toBe('::1')
  })

  it('reads X-Forwarded-For from the right, past each trusted hop', () => {
    // nginx on the same host appends the address it saw.
    expect(clientOf('loopback', '127.0.0.1', '203.0.113.9')).toBe('203.0.113.9')
    // A client that prepends a made-up hop does not get past the address nginx appended.
    expect(clientOf('loopback', '127.0.0.1', '198.51.100.1, 203.0.113.9')).toBe('203.0.113.9')
    // A load balancer in a known subnet in front of nginx on the same host.
    expect(
      clientOf('loopback, 10.0.0.0/8', '127.0.0.1', '198.51.100.1, 203.0.113.9, 10.1.2.3'),
    ).toBe('203.0.113.9')
    // A peer outside the list is the client, whatever it forwards.
    expect(clientOf('10.0.0.0/8', '192.0.2.1', '203.0.113.9')).toBe('192.0.2.1')
  })

  it('counts hops: N trusts the peer and the N-1 hops before it', () => {
    expect(clientOf('1', '10.0.0.5', '198.51.100.1, 203.0.113.9')).toBe('203.0.113.9')
    expect(clientOf('2', '10.0.0.5', '198.51.100.1, 203.0.113.9, 10.0.0.4')).toBe('203.0.113.9')
    // Fewer hops than configured: the leftmost address is all there is.
    expect(clientOf('3', '10.0.0.5', '203.0.113.9')).toBe('203.0.113.9')
  })

  it('trusts every hop with true: the leftmost address, which the client chose', () => {
    expect(clientOf('true', '127.0.0.1', '198.51.100.1, 203.0.113.9')).toBe('198.51.100.1')
  })

  it('has no address for a socket that closed', () => {
    expect(clientOf('loopback', undefined, '203.0.113.9')).toBeUndefined()
  })
})

describe('the per-IP limit of failed authentications (requests and upgrades alike)', () => {
  const limitsFor = (trustProxy: string) => {
    const limits = createRateLimits({
      config: {
        RATE_LIMIT_WINDOW_MS: 60_000,
        RATE_LIMIT_PER_USER: 0,
        RATE_LIMIT_PER_TENANT: 0,
        RATE_LIMIT_PER_IP: 2,
        RATE_LIMIT_PER_WATCH_JOB: 0,
      },
    })
    const trust = compileTrustProxy(trustProxy)
    return (req: IncomingMessage) => limits.admit(undefined, clientAddressOf(req, trust))
  }

  it('keys a local client on its socket address whatever it forwards, by default', async () => {
    const failedFrom = limitsFor('false')
    await failedFrom(request('127.0.0.1', '203.0.113.1'))
    await failedFrom(request('127.0.0.1', '203.0.113.2'))
    await expect(failedFrom(request('127.0.0.1', '203.0.113.3'))).rejects.toBeInstanceOf(
      TooManyRequestsError,
    )
  })

  it('keys on the forwarded client behind a trusted proxy', async () => {
    const failedFrom = limitsFor('loopback')
    for (let i = 0; i < 2; i++) {
      await failedFrom(request('127.0.0.1', '203.0.113.1'))
      await failedFrom(request('127.0.0.1', '203.0.113.2'))
    }
    await expect(failedFrom(request('127.0.0.1', '203.0.113.1'))).rejects.toBeInstanceOf(
      TooManyRequestsError,
    )
  })
})
