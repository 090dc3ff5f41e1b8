// Load generator: many idle WebSocket connections in one process. Each connects, optionally
// sends one message (jobwire's `subscribe`), and counts as open once its first message (the
// snapshot) arrived; then it stays idle until closeAll.
import WebSocket from 'ws'
import { openConcurrently, serve } from '../lib/child.js'

export interface WsOpenArgs {
  url: string
  token: string
  count: number
  /** Sent once the socket is open (JSON); none for the floor server. */
  hello?: unknown
  concurrency: number
  timeoutMs: number
}

const sockets: WebSocket[] = []

function openOne(args: WsOpenArgs): Promise<void> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(args.url, {
      headers: { authorization: `Bearer ${args.token}` },
      perMessageDeflate: false,
    })
    const timer = setTimeout(() => {
      ws.terminate()
      reject(new Error('no first message in time'))
    }, args.timeoutMs)
    ws.once('open', () => {
      if (args.hello !== undefined) ws.send(JSON.stringify(args.hello))
    })
    ws.once('message', () => {
      clearTimeout(timer)
      sockets.push(ws)
      resolve()
    })
    ws.once('unexpected-response', (_req, res) => {
      clearTimeout(timer)
      reject(new Error(`HTTP ${res.statusCode}`))
    })
    ws.once('error', (error) => {
      clearTimeout(timer)
      reject(error)
    })
  })
}

serve({
  open: (args: WsOpenArgs) => openConcurrently(args.count, args.concurrency, () => openOne(args)),
  closeAll: () => {
    for (const ws of sockets.splice(0)) ws.terminate()
    return true
  },
})
