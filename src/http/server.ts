// Owns the node:http server: binds HOST:PORT (PORT=0 picks a port), hands every request to
// the edge first and to express when the edge declines, upgrades to the edge, tracks the
// sockets, and stops gracefully: no new connections, streams told to go (the client resumes
// elsewhere), idle and never-used keep-alive sockets closed at once, requests in flight
// finished — all bounded by SHUTDOWN_TIMEOUT_MS, after which every connection is cut.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import type { Duplex } from 'node:stream'

export interface HttpHandlers {
  /** Serves the request and returns true, or returns false to pass it on to `fallback`. */
  request(req: IncomingMessage, res: ServerResponse): boolean
  fallback(req: IncomingMessage, res: ServerResponse): void
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void
}

export interface HttpServer {
  server: Server
  /** `http://host:port`, with the port really bound. */
  url: string
  /** Stops as described above; `drainStreams` ends streams and parked waiters. */
  close(drainStreams: () => void): Promise<void>
}

export async function listenHttp(
  handlers: HttpHandlers,
  options: { host: string; port: number; shutdownTimeoutMs: number },
): Promise<HttpServer> {
  const server = createServer((req, res) => {
    if (!handlers.request(req, res)) handlers.fallback(req, res)
  })
  server.on('upgrade', handlers.upgrade)
  server.keepAliveTimeout = 65_000
  server.headersTimeout = 66_000
  const sockets = new Set<Socket>()
  server.on('connection', (socket: Socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  })

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port, options.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const { port } = server.address() as AddressInfo
  const host = options.host === '0.0.0.0' || options.host === '::' ? '127.0.0.1' : options.host
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`

  return {
    server,
    url,
    async close(drainStreams) {
      const timer = setTimeout(() => server.closeAllConnections(), options.shutdownTimeoutMs)
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()))
      drainStreams()
      // Idle keep-alive connections close now; so do connections that never sent a request
      // (browsers and undici open them ahead of time), which closeIdleConnections() skips.
      // Requests in flight finish, bounded by the timeout.
      const sweep = setInterval(() => {
        server.closeIdleConnections()
        for (const socket of sockets) if (socket.bytesRead === 0) socket.destroy()
      }, 50)
      server.closeIdleConnections()
      await stopped
      clearInterval(sweep)
      clearTimeout(timer)
    },
  }
}
