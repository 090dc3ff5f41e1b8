// Peer for scenario 6: the same route, `GET /v1/jobs/:id`, on express 5 over the same kind of
// pool, without JWT and without RLS: a named prepared plain SELECT by primary key, the same
// document builder, the same ETag and Cache-Control. What jobwire's route costs above this is
// the price of authentication and tenant isolation.
import type { AddressInfo } from 'node:net'
import express from 'express'
import pg from 'pg'
import { toJobDocument } from '../../src/events/document.js'
import type { JobRow } from '../../src/db/schema.js'
import { serve } from '../lib/child.js'

const pool = new pg.Pool({
  connectionString: process.env.DATABASE_URL,
  max: Number(process.env.DB_POOL_MAX ?? 10),
  application_name: 'bench-plain-get',
})
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

const app = express()
app.disable('x-powered-by')
app.set('etag', false)
app.get('/v1/jobs/:id', async (req, res) => {
  const id = req.params.id
  if (!UUID.test(id)) return void res.status(400).json({ title: 'bad id' })
  const { rows } = await pool.query<JobRow>({
    name: 'plain-get-job',
    text: 'SELECT * FROM job_queue WHERE id = $1',
    values: [id],
  })
  if (!rows[0]) return void res.status(404).json({ title: 'not found' })
  const doc = toJobDocument(rows[0])
  res.set('etag', `"${doc.version}"`).set('cache-control', 'private, no-cache').json(doc)
})

const server = app.listen(0, '127.0.0.1')
await new Promise<void>((r) => server.once('listening', () => r()))

serve(
  {},
  { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, pid: process.pid },
  async () => {
    server.closeAllConnections()
    await pool.end()
  },
)
