// Load generator: many idle WebSocket connections in one process. Each connects, optionally
// sends one message (jobwire's `subscribe`), and counts as open once its first message (the
// snapshot) arrived; then it stays idle until closeAll.
import WebSocket from 'ws'
import { nowMs, serve } from '../lib/child.js'

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
  open: async (args: WsOpenArgs) => {
    let started = 0
    let opened = 0
    const failures: string[] = []
    const t0 = nowMs()
    const worker = async () => {
      while (started < args.count) {
        started++
        try {
          await openOne(args)
          opened++
        } catch (error) {
          failures.push((error as Error).message)
        }
      }
    }
    await Promise.all(Array.from({ length: Math.max(1, args.concurrency) }, worker))
    return {
      opened,
      failed: failures.length,
      failureSamples: [...new Set(failures)].slice(0, 5),
      ms: nowMs() - t0,
    }
  },
  closeAll: () => {
    for (const ws of sockets.splice(0)) ws.terminate()
    return true
  },
})
