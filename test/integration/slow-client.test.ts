// A slow client (docs/contract.md §7): a raw socket that stops reading while 2,000 updates commit.
// The server must not buffer for it without bound: nothing queues once its socket is congested (the
// server-side write buffer stays near STREAM_HIGH_WATER_BYTES), memory stays flat, and when the
// client reads again one merged patch brings it to the final row.
import { connect, type Socket } from 'node:net'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import fastJsonPatch, { type Operation } from 'fast-json-patch'
import pg from 'pg'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import { createJob, newTenant, startTestService, type TestService } from '../helpers/service.js'

type Doc = Record<string, unknown> & { version: number }

const HIGH_WATER_BYTES = 8192
const UPDATES = 2000

// A full collection before each reading, so that the memory compared is what is retained,
// not garbage waiting for the collector (jest does not start node with --expose-gc).
setFlagsFromString('--expose-gc')
const collectGarbage = runInNewContext('gc') as () => void

/** Retained JavaScript heap plus Buffers (frames are Buffers, outside the JS heap). */
function retainedBytes(): number {
  collectGarbage()
  const { heapUsed, arrayBuffers } = process.memoryUsage()
  return heapUsed + arrayBuffers
}

let database: TestDatabase
let service: TestService
let sql: pg.Client

beforeAll(async () => {
  database = await createTestDatabase()
  service = await startTestService(database.url, {
    STREAM_HIGH_WATER_BYTES: String(HIGH_WATER_BYTES),
    SWEEP_INTERVAL_MS: '0',
  })
  sql = new pg.Client({ connectionString: database.url })
  await sql.connect()
})
afterAll(async () => {
  await sql?.end()
  await service?.close()
  await database?.drop()
})

interface RawEvent {
  event: string
  id: string | undefined
  data: string
}

/**
 * An SSE client on a bare socket: HTTP/1.1 by hand, chunked transfer decoding, SSE parsing.
 * It reads nothing while the socket is paused, as a client on a stalled network would.
 */
class RawSseClient {
  readonly events: RawEvent[] = []
  status = 0
  private buffer = Buffer.alloc(0)
  private body = ''
  private isHeaderDone = false
  private waiters: Array<() => void> = []
  isEnded = false

  constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => this.onData(chunk))
    socket.on('close', () => {
      this.isEnded = true
      this.notify()
    })
  }

  static async open(url: string, path: string, token: string): Promise<RawSseClient> {
    const { hostname, port } = new URL(url)
    const socket = connect(Number(port), hostname)
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve)
      socket.once('error', reject)
    })
    socket.write(
      `GET ${path} HTTP/1.1\r\nHost: ${hostname}:${port}\r\n` +
        `Authorization: Bearer ${token}\r\nAccept: text/event-stream\r\n\r\n`,
    )
    return new RawSseClient(socket)
  }

  /** Resolves once `check` holds on the events received so far. */
  async until(check: (events: RawEvent[]) => boolean, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (!check(this.events)) {
      if (this.isEnded) throw new Error('the stream ended')
      const remaining = deadline - Date.now()
      if (remaining <= 0) throw new Error(`timed out after ${timeoutMs} ms`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, remaining)
        this.waiters.push(() => {
          clearTimeout(timer)
          resolve()
        })
      })
    }
  }

  private notify(): void {
    for (const w of this.waiters.splice(0)) w()
  }

  private onData(chunk: Buffer): void {
    this.buffer = Buffer.concat([this.buffer, chunk])
    if (!this.isHeaderDone) {
      const end = this.buffer.indexOf('\r\n\r\n')
      if (end < 0) return
      const head = this.buffer.subarray(0, end).toString()
      this.status = Number(head.split(' ')[1])
      expect(head.toLowerCase()).toContain('transfer-encoding: chunked')
      this.buffer = this.buffer.subarray(end + 4)
      this.isHeaderDone = true
    }
    // Chunked transfer coding: <hex size>\r\n<data>\r\n … 0\r\n\r\n
    for (;;) {
      const lineEnd = this.buffer.indexOf('\r\n')
      if (lineEnd < 0) break
      const size = parseInt(this.buffer.subarray(0, lineEnd).toString(), 16)
      if (this.buffer.length < lineEnd + 2 + size + 2) break
      this.body += this.buffer.subarray(lineEnd + 2, lineEnd + 2 + size).toString()
      this.buffer = this.buffer.subarray(lineEnd + 2 + size + 2)
      if (size === 0) this.isEnded = true
    }
    let start = 0
    let index: number
    while ((index = this.body.indexOf('\n\n', start)) >= 0) {
      const block = this.body.slice(start, index)
      start = index + 2
      const event: RawEvent = { event: 'message', id: undefined, data: '' }
      let hasData = false
      for (const line of block.split('\n')) {
        const colon = line.indexOf(':')
        if (colon === 0) continue // a comment
        const field = line.slice(0, colon)
        const value = line.slice(colon + 1).replace(/^ /, '')
        if (field === 'event') event.event = value
        else if (field === 'id') event.id = value
        else if (field === 'data') {
          event.data = value
          hasData = true
        }
      }
      if (hasData) this.events.push(event)
    }
    this.body = this.body.slice(start)
    this.notify()
  }
}

/** Applies what a client received: snapshots replace, patches apply with validation. */
function replay(events: RawEvent[]): Doc {
  let doc: Doc | undefined
  for (const e of events) {
    if (e.event === 'snapshot') doc = JSON.parse(e.data) as Doc
    else if (e.event === 'patch') {
      const patch = JSON.parse(e.data) as Operation[]
      expect(patch[0]).toEqual({ op: 'test', path: '/version', value: doc!.version })
      doc = fastJsonPatch.applyPatch(doc!, patch, true, false).newDocument
    }
  }
  return doc!
}

it('buffers nothing for a paused client and catches it up with one merged patch', async () => {
  const t = newTenant()
  const job = await createJob(service, t.admin)
  const serverSockets: Socket[] = []
  const onConnection = (s: Socket) => serverSockets.push(s)
  service.server.on('connection', onConnection)
  const client = await RawSseClient.open(service.url, `/v1/jobs/${job.id}/events`, t.admin)
  service.server.off('connection', onConnection)
  try {
    await client.until((events) => events.some((e) => e.event === 'snapshot'))
    expect(client.status).toBe(200)
    const serverSide = serverSockets.find((s) => s.remotePort === client.socket.localPort)!
    expect(serverSide).toBeDefined()

    client.socket.pause()
    const memoryBefore = retainedBytes()
    let maxWritable = 0
    const sampler = setInterval(() => {
      maxWritable = Math.max(maxWritable, serverSide.writableLength)
    }, 5)

    // 2,000 committed updates (one autocommit statement each), each changing ~6 KB of the
    // serialized document: a step of 990 control characters, each escaped as \u0001 in JSON.
    // Queued in full that would be ~12 MB, far more than the kernel's socket buffers take.
    const changesBefore = service.hub.stats.changes
    const fill = '\u0001'.repeat(990)
    for (let i = 0; i < UPDATES; i++) {
      await sql.query(
        `UPDATE job_queue SET status = 'running', progress = $2, step = $3 WHERE id = $1`,
        [job.id, (i * 100) / UPDATES, `${i}:${fill}`],
      )
    }
    const finalVersion = UPDATES + 1
    // A long-poll shows when the hub holds the final version (and costs no query).
    const caughtUp = await service.fetch(`/v1/jobs/${job.id}/wait?since=${finalVersion - 1}`, {
      token: t.admin,
    })
    expect(((await caughtUp.json()) as Doc).version).toBe(finalVersion)
    clearInterval(sampler)
    maxWritable = Math.max(maxWritable, serverSide.writableLength)

    // The hub did see many versions go by while the client was paused …
    expect(service.hub.stats.changes - changesBefore).toBeGreaterThan(10)
    // … but the server kept at most about one high-water mark of them for this client.
    expect(maxWritable).toBeLessThan(2 * HIGH_WATER_BYTES)
    // Queued in full, the frames would be ~10 MB beyond what the kernel took; kept bounded,
    // the retained growth is the job's short history and little else.
    expect(retainedBytes() - memoryBefore).toBeLessThan(4 * 1024 * 1024)

    client.socket.resume()
    await client.until((events) => events[events.length - 1]?.id === String(finalVersion))
    const doc = replay(client.events)
    const row = (await (
      await service.fetch(`/v1/jobs/${job.id}`, { token: t.admin })
    ).json()) as Doc
    expect(doc).toEqual(row)
    // Fewer events than versions: the backlog was merged, not replayed, and at least one
    // patch spans many versions.
    const hubChanges = service.hub.stats.changes - changesBefore
    expect(client.events.length).toBeLessThan(hubChanges)
    const spans = client.events
      .filter((e) => e.event === 'patch')
      .map((e) => Number(e.id) - (JSON.parse(e.data) as Array<{ value: number }>)[0]!.value)
    expect(Math.max(...spans)).toBeGreaterThan(10)

    // And the stream is live again afterwards.
    await sql.query(`UPDATE job_queue SET status = 'completed', result = '"done"' WHERE id = $1`, [
      job.id,
    ])
    await client.until((events) => events.some((e) => e.event === 'end'))
    expect(replay(client.events)).toMatchObject({ status: 'completed', result: 'done' })
  } finally {
    client.socket.destroy()
  }
}, 60_000)
