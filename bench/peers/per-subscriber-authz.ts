// Peer for scenario 11: per-subscriber authorisation, as row-level-security-aware change
// feeds often work. Like jobwire it holds one LISTEN connection and a map of who watches which
// job; unlike jobwire, every notification is re-read once per subscriber under that
// subscriber's own RLS identity (one round trip each, through a pool of 10), and the patch is
// built from that read. Correct and simple; the cost is one query per subscriber per event.
import { createServer, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import pg from 'pg'
import type { JobDocument } from '../../src/protocol/job.js'
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
  type PeerPrincipal,
} from './peer-kit.js'

interface Subscriber {
  res: ServerResponse
  principal: PeerPrincipal
  doc: JobDocument
}

const queries = countQueries()
const pool = new pg.Pool({
  connectionString: process.env.DATABASE_URL,
  max: Number(process.env.DB_POOL_MAX ?? 10),
  application_name: 'bench-authz-peer',
})
const watchers = new Map<string, Set<Subscriber>>()
let notifications = 0

const listener = new pg.Client({
  connectionString: process.env.DATABASE_URL,
  application_name: 'bench-authz-listener',
})
await listener.connect()
listener.on('notification', (msg) => {
  let id: string
  try {
    id = (JSON.parse(msg.payload ?? '') as { id: string }).id
  } catch {
    return
  }
  const subs = watchers.get(id)
  if (!subs) return
  notifications++
  for (const sub of subs) {
    readVisible(pool, sub.principal, id)
      .then((next) => {
        if (!next || next.version <= sub.doc.version || sub.res.destroyed) return
        sub.res.write(patchFrame(sub.doc, next))
        sub.doc = next
      })
      .catch(() => undefined)
  }
})
await listener.query('LISTEN jobwire')

const server = createServer((req, res) => {
  void (async () => {
    const id = JOB_EVENTS_PATH.exec(req.url ?? '')?.[1]
    const principal = authenticate(req)
    if (!id) return reject(res, 404)
    if (!principal) return reject(res, 401)
    const doc = await readVisible(pool, principal, id)
    if (!doc) return reject(res, 404)
    openSse(res)
    res.write(frame('snapshot', doc, doc.version))
    const sub: Subscriber = { res, principal, doc }
    let subs = watchers.get(id)
    if (!subs) watchers.set(id, (subs = new Set()))
    subs.add(sub)
    res.on('close', () => {
      subs.delete(sub)
      if (subs.size === 0) watchers.delete(id)
    })
  })().catch(() => reject(res, 500))
})
server.listen(0, '127.0.0.1', 1024)
await new Promise<void>((r) => server.once('listening', () => r()))

serve(
  {
    stats: () => ({
      streams: [...watchers.values()].reduce((a, s) => a + s.size, 0),
      queries: queries.total,
      notifications,
    }),
  },
  { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, pid: process.pid },
  async () => {
    server.closeAllConnections()
    await listener.end()
    await pool.end()
  },
)
