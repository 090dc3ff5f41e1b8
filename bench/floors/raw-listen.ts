// Floor: a bare pg client LISTENing on the `jobwire` channel, receiving the very NOTIFYs the
// service receives (bench/TARGETS.md "raw LISTEN"). It records when each (job, version) arrived on
// the shared monotonic clock; the bench joins that with the writer's send times.
import pg from 'pg'
import { nowMs, serve } from '../lib/child.js'

let client: pg.Client | undefined
let received: Array<[string, number, number]> = []

serve(
  {
    listen: async (args: { url: string }) => {
      client = new pg.Client({ connectionString: args.url, application_name: 'jobwire-bench-raw' })
      await client.connect()
      client.on('notification', (msg) => {
        const t = nowMs()
        try {
          const n = JSON.parse(msg.payload ?? '') as { id: string; version: number }
          received.push([n.id, Number(n.version), t])
        } catch {
          // Not a jobwire payload: nothing to time.
        }
      })
      await client.query('LISTEN jobwire')
      return true
    },
    collect: (args: { reset?: boolean }) => {
      const out = received
      if (args.reset) received = []
      return out
    },
  },
  {},
  async () => {
    await client?.end().catch(() => undefined)
  },
)
