// The replication stream behind a connection that goes silent without closing (a vanished
// host, a stateful firewall dropping the flow): the source notices from its unanswered status
// updates, reconnects with a new temporary slot, and ends the previous slot's walsender at once
// instead of leaving it (and the WAL its slot holds) to wal_sender_timeout.
import { createServer, connect, type Server, type Socket } from 'node:net'
import pg from 'pg'
import { pino } from 'pino'
import { ReplicationSource } from '../../src/events/replication-source.js'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import { targetOf, type TcpProxyTarget } from '../helpers/tcp-proxy.js'

let database: TestDatabase
let sql: pg.Client

beforeAll(async () => {
  database = await createTestDatabase()
  sql = new pg.Client({ connectionString: database.url })
  await sql.connect()
})
afterAll(async () => {
  await sql?.end()
  await database?.drop()
})

/** A TCP proxy whose freeze() stops carrying bytes on open connections but closes nothing. */
async function startFreezingProxy(target: TcpProxyTarget) {
  const pairs: Array<[Socket, Socket]> = []
  const server: Server = createServer((client) => {
    const upstream = connect(target.targetPort, target.targetHost)
    client.pipe(upstream)
    upstream.pipe(client)
    const drop = () => {
      client.destroy()
      upstream.destroy()
    }
    client.on('error', drop)
    upstream.on('error', drop)
    pairs.push([client, upstream])
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  return {
    url(databaseUrl: string) {
      const u = new URL(databaseUrl)
      u.host = `127.0.0.1:${port}`
      return u.toString()
    },
    freeze() {
      for (const [client, upstream] of pairs) {
        client.unpipe(upstream)
        upstream.unpipe(client)
        client.pause()
        upstream.pause()
      }
    },
    async close() {
      for (const [client, upstream] of pairs) {
        client.destroy()
        upstream.destroy()
      }
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

it('ends the slot a half-open connection left behind when it reconnects', async () => {
  const proxy = await startFreezingProxy(targetOf(database.url))
  const rows: string[] = []
  const source = new ReplicationSource({
    connectionString: proxy.url(database.url),
    logger: pino({ level: 'silent' }),
    reconnectMinMs: 50,
    reconnectMaxMs: 200,
    pingIntervalMs: 300,
    onRow: (id) => rows.push(id),
    onNotification: () => undefined,
    onConnected: () => undefined,
  })
  try {
    await source.start()
    const first = { slot: source.slotName!, pid: source.backendPid! }
    proxy.freeze()
    await until(() => source.reconnects === 1 && source.isConnected, 'a new stream')
    expect(source.slotName).not.toBe(first.slot)

    const slotOf = async (name: string) =>
      (
        await sql.query<{ active_pid: number | null }>(
          'SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1',
          [name],
        )
      ).rows
    // Gone well before wal_sender_timeout (60 s): its walsender was terminated.
    await until(async () => (await slotOf(first.slot)).length === 0, 'the old slot to go')
    expect(await slotOf(source.slotName!)).toEqual([{ active_pid: source.backendPid }])

    const { rows: inserted } = await sql.query<{ id: string }>(
      `INSERT INTO job_queue (tenant_id, type) VALUES (gen_random_uuid(), 'after') RETURNING id`,
    )
    await until(() => rows.includes(inserted[0]!.id), 'the new stream to carry a change')
  } finally {
    await source.stop()
    await proxy.close()
  }
}, 30_000)
