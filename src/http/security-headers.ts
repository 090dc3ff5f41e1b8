// The security headers of every HTTP response, REST and streams alike: helmet's, computed once
// at start-up into one frozen list (helmet's output depends only on its options), so the
// edge's hot routes and the express routes send exactly the same set without running
// helmet per request.
import type { IncomingMessage, ServerResponse } from 'node:http'
import helmet from 'helmet'
import type { Config } from '../config/index.js'

export type HeaderList = ReadonlyArray<readonly [name: string, value: string]>

export function securityHeaders(config: Pick<Config, 'isProduction'>): HeaderList {
  const middleware = helmet({
    contentSecurityPolicy: {
      directives: {
        'script-src': ["'self'"],
        'connect-src': ["'self'"],
        // Over plain http (development on a LAN address) the browser would otherwise rewrite
        // the page's own requests to https and break it.
        'upgrade-insecure-requests': config.isProduction ? [] : null,
      },
    },
    // HSTS pins a host to https for a year: only where it is served over https.
    strictTransportSecurity: config.isProduction,
  })
  const headers = new Map<string, string>()
  const recorder = {
    setHeader: (name: string, value: unknown) =>
      void headers.set(name.toLowerCase(), String(value)),
    removeHeader: (name: string) => void headers.delete(name.toLowerCase()),
    getHeader: (name: string) => headers.get(name.toLowerCase()),
  }
  let isDone = false
  middleware({} as IncomingMessage, recorder as unknown as ServerResponse, () => (isDone = true))
  if (!isDone) throw new Error('helmet did not finish synchronously')
  return Object.freeze([...headers].map((pair) => Object.freeze(pair)))
}

export function setHeaders(res: ServerResponse, headers: HeaderList): void {
  for (const [name, value] of headers) res.setHeader(name, value)
}
