// Floor for row 3's WebSocket line: the ws package on a bare node:http server, holding idle
// connections; each gets one snapshot message of jobwire's size on connect and nothing after.
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { WebSocketServer } from 'ws'
import { serve } from '../lib/child.js'
import { BENCH_DOCUMENT } from './bench-document.js'

const server = createServer()
const wss = new WebSocketServer({ server, perMessageDeflate: false })
const snapshot = JSON.stringify({
  type: 'snapshot',
  job: BENCH_DOCUMENT.id,
  version: BENCH_DOCUMENT.version,
  doc: BENCH_DOCUMENT,
})
wss.on('connection', (ws) => ws.send(snapshot))
await new Promise<void>((r) => server.listen(0, '127.0.0.1', 1024, r))

serve(
  {
    count: () => wss.clients.size,
    gc: () => {
      const gc = (globalThis as { gc?: () => void }).gc
      gc?.()
      gc?.()
      return { collected: gc !== undefined }
    },
  },
  { url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}`, pid: process.pid },
  async () => {
    for (const ws of wss.clients) ws.terminate()
    await new Promise<void>((r) => server.close(() => r()))
  },
)
