// Owns "which address is the client": the socket's peer, unless TRUST_PROXY says that peer
// (and maybe the hops before it) is a proxy of ours, in which case X-Forwarded-For is read
// from the right, past every trusted hop, as express does (proxy-addr). Express gets the
// same decision through `app.set('trust proxy', trust)`; a raw node:http request or upgrade
// handler calls clientAddressOf(). The per-IP rate limit and the request log key on it.
//
// The default trusts no proxy: the peer is the client, and X-Forwarded-For is ignored. A
// hop count or `true` trusts whoever connects; only an address list is safe when clients
// can also reach the service directly (docs/production.md, "Trusted proxies").
import type { IncomingMessage } from 'node:http'
import proxyAddr from 'proxy-addr'

/** Whether the address `hop` steps from the service (0: the socket's peer) is our proxy. */
export type TrustProxy = (address: string, hop: number) => boolean

/**
 * TRUST_PROXY → the trust function: `false` (the default), `true`, a hop count, or
 * comma-separated addresses, CIDR subnets and the names `loopback`, `linklocal`,
 * `uniquelocal`. Throws TypeError on an address proxy-addr cannot parse (config validates
 * this at start-up).
 */
export function compileTrustProxy(value: string): TrustProxy {
  const setting = value.trim()
  if (setting === 'false' || setting === '') return () => false
  if (setting === 'true') return () => true
  if (/^\d+$/.test(setting)) {
    const hops = Number(setting)
    return (_address, hop) => hop < hops
  }
  return proxyAddr.compile(
    setting
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
  )
}

/**
 * The client's address for a request or an upgrade request; undefined when the socket has
 * already closed. The same answer express gives as `req.ip` under the same trust function.
 */
export function clientAddressOf(req: IncomingMessage, trust: TrustProxy): string | undefined {
  if (req.socket.remoteAddress === undefined) return undefined
  return proxyAddr(req, trust)
}
