// Floor for row 5: a bare node:http server that parks every request (any path, `?since=V`) and,
// on `broadcast`, answers all of them at once with a job document one version newer than their
// `since` — the same JSON body size as jobwire's /wait answer, built once per distinct version,
// with only Content-Type and Content-Length. It is what answering N parked HTTP requests costs
// on this machine (a response head, a body, the connection's end), next to the SSE fan-out
// floor, which writes one frame to N open streams.
import { createServer, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { nowMs, serve } from '../lib/child.js'
import { BENCH_DOCUMENT } from './bench-document.js'

const parked: Array<{ res: ServerResponse; since: number }> = []

const server = createServer((req, res) => {
  req.socket.setNoDelay(true)
  const since = Number(new URL(req.url ?? '/', 'http://floor').searchParams.get('since') ?? 0)
  parked.push({ res, since })
})
server.keepAliveTimeout = 0
server.headersTimeout = 0
server.requestTimeout = 0
await new Promise<void>((r) => server.listen(0, '127.0.0.1', 1024, r))

serve(
  {
    count: () => parked.length,
    /** Answers every parked request; returns when the last end() call returned. */
    broadcast: () => {
      const t0 = nowMs()
      const bodies = new Map<number, Buffer>()
      const updatedAt = new Date().toISOString()
      const waiters = parked.splice(0)
      for (const { res, since } of waiters) {
        let body = bodies.get(since)
        if (!body) {
          body = Buffer.from(
            JSON.stringify({ ...BENCH_DOCUMENT, version: since + 1, updated_at: updatedAt }),
          )
          bodies.set(since, body)
        }
        res.writeHead(200, {
          'content-type': 'application/json; charset=utf-8',
          'content-length': body.length,
        })
        res.end(body)
      }
      return { t0, t1: nowMs(), answered: waiters.length }
    },
  },
  { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, pid: process.pid },
  async () => {
    server.closeAllConnections()
    await new Promise<void>((r) => server.close(() => r()))
  },
)
