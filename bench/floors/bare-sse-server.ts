// Floor: a bare node:http server holding idle SSE connections and writing one pre-framed buffer to
// each (bench/TARGETS.md "bare sockets"). It speaks the same bytes as jobwire (a snapshot of a job
// document first, then JSON Patch frames of ~340 bytes), so the very same client code parses both
// and the comparison is only about the server side.
import { createServer, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { nowMs, serve } from '../lib/child.js'
import { BENCH_DOCUMENT as DOC } from './bench-document.js'

const clients = new Set<ServerResponse>()
let version = 1

const server = createServer((req, res) => {
  req.socket.setNoDelay(true)
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    'x-accel-buffering': 'no',
    connection: 'keep-alive',
  })
  res.write(
    `retry: 2000\n\nid: ${version}\nevent: snapshot\ndata: ${JSON.stringify({ ...DOC, version })}\n\n`,
  )
  clients.add(res)
  res.on('close', () => clients.delete(res))
})
server.keepAliveTimeout = 0
server.headersTimeout = 0
server.requestTimeout = 0
await new Promise<void>((r) => server.listen(0, '127.0.0.1', 1024, r))

/** One patch frame, as jobwire would send for a progress/step change (~340 bytes). */
function patchFrame(next: number, origin: number): Buffer {
  const data = JSON.stringify([
    { op: 'test', path: '/version', value: next - 1 },
    { op: 'replace', path: '/progress', value: next % 100 },
    { op: 'replace', path: '/step', value: `t:${origin.toFixed(3)}` },
    { op: 'replace', path: '/version', value: next },
    { op: 'replace', path: '/eta_seconds', value: 1000 + (next % 1000) },
    { op: 'replace', path: '/updated_at', value: new Date().toISOString() },
  ])
  return Buffer.from(`id: ${next}\nevent: patch\ndata: ${data}\n\n`)
}

serve(
  {
    count: () => clients.size,
    gc: () => {
      const gc = (globalThis as { gc?: () => void }).gc
      gc?.()
      gc?.()
      return { collected: gc !== undefined }
    },
    /** Writes one frame to every client; returns when the last write() call returned. */
    broadcast: () => {
      const t0 = nowMs()
      const frame = patchFrame(version + 1, t0)
      version++
      for (const res of clients) res.write(frame)
      return { t0, t1: nowMs(), clients: clients.size, bytes: frame.length, version }
    },
    closeAll: () => {
      for (const res of clients) res.end()
      clients.clear()
      return true
    },
  },
  { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, pid: process.pid },
  async () => {
    server.closeAllConnections()
    await new Promise<void>((r) => server.close(() => r()))
  },
)
