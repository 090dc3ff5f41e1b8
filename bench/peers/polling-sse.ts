// Peer for scenario 10: the naive polling stream a team often writes by hand. One SSE
// endpoint per client; every 2 s each connection re-reads its row (under RLS, one round trip)
// and, when the version moved, sends a JSON Patch from what it sent last. Nothing is shared
// between connections: that is the design being compared, not a weakness added to it.
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import pg from 'pg'
import { serve } from '../lib/child.js'
import { countQueries } from '../lib/query-counter.js'
import {
  authenticate,
  frame,
  JOB_EVENTS_PATH,
  openSse,
  patchFrame,
  readVisible,
  reject,
} from './peer-kit.js'

const POLL_INTERVAL_MS = 2000

const queries = countQueries()
const pool = new pg.Pool({
  connectionString: process.env.DATABASE_URL,
  max: Number(process.env.DB_POOL_MAX ?? 10),
  application_name: 'bench-polling-sse',
})
let open = 0

const server = createServer((req, res) => {
  void (async () => {
    const id = JOB_EVENTS_PATH.exec(req.url ?? '')?.[1]
    const principal = authenticate(req)
    if (!id) return reject(res, 404)
    if (!principal) return reject(res, 401)
    let doc = await readVisible(pool, principal, id)
    if (!doc) return reject(res, 404)
    openSse(res)
    res.write(frame('snapshot', doc, doc.version))
    open++
    let isPolling = false
    const timer = setInterval(() => {
      if (isPolling) return // the previous read is still queued: skip, do not pile up
      isPolling = true
      readVisible(pool, principal, id)
        .then((next) => {
          if (next && doc && next.version > doc.version) {
            res.write(patchFrame(doc, next))
            doc = next
          }
        })
        .catch(() => undefined)
        .finally(() => (isPolling = false))
    }, POLL_INTERVAL_MS)
    res.on('close', () => {
      clearInterval(timer)
      open--
    })
  })().catch(() => reject(res, 500))
})
server.listen(0, '127.0.0.1', 1024)
await new Promise<void>((r) => server.once('listening', () => r()))

serve(
  { stats: () => ({ streams: open, queries: queries.total }) },
  { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, pid: process.pid },
  async () => {
    server.closeAllConnections()
    await pool.end()
  },
)
