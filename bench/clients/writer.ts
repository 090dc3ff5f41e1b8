// Load generator: the writer, as a DB-side worker in any language would write (plain
// autocommit UPDATEs over its own connections, no HTTP). Latency origin: the time just before
// the UPDATE is handed to the socket, put into the row itself as `step = "t:<ms>"` on the
// shared monotonic clock, so every client can compute "parsed − sent" for the version it got.
import pg from 'pg'
import { nowMs, serve, sleep } from '../lib/child.js'

let clients: pg.Client[] = []

const UPDATE = 'UPDATE job_queue SET progress = $2, step = $3 WHERE id = $1 RETURNING version'

export interface WriteRecord {
  job: string
  version: number
  sendT: number
  ackT: number
}

/**
 * `synchronousCommit: 'off'` sets the session's synchronous_commit: a commit returns before its
 * WAL is flushed (a crash may lose the last ~600 ms of commits, never consistency), the
 * durability of a Redis without persistence.
 */
async function connect(args: { url: string; connections: number; synchronousCommit?: 'off' }) {
  await Promise.all(clients.map((c) => c.end()))
  clients = await Promise.all(
    Array.from({ length: args.connections }, async () => {
      const c = new pg.Client({ connectionString: args.url, application_name: 'jobwire-bench' })
      await c.connect()
      if (args.synchronousCommit) await c.query(`SET synchronous_commit = off`)
      c.on('error', () => undefined)
      return c
    }),
  )
  return { connections: clients.length }
}

/**
 * `ratePerSec` UPDATEs per second for `durationMs`, round-robin over `jobs`, each on an idle
 * connection (or queued until one is free; the send time is taken when it really goes out).
 */
async function run(args: {
  jobs: string[]
  ratePerSec: number
  durationMs: number
  table?: string
}) {
  const sql = args.table ? UPDATE.replace('job_queue', args.table) : UPDATE
  const total = Math.floor((args.ratePerSec * args.durationMs) / 1000)
  const records: WriteRecord[] = []
  const idle = [...clients]
  const backlog: number[] = []
  let sent = 0
  let done = 0
  let errors = 0
  let maxBacklog = 0
  const errorSamples: string[] = []
  let resolveDone!: () => void
  const allDone = new Promise<void>((r) => (resolveDone = r))

  const dispatch = (client: pg.Client, seq: number) => {
    const job = args.jobs[seq % args.jobs.length]!
    const sendT = nowMs()
    client
      .query<{ version: string }>(sql, [job, seq % 100, `t:${sendT.toFixed(3)}`])
      .then(
        (res) => {
          records.push({ job, version: Number(res.rows[0]?.version), sendT, ackT: nowMs() })
        },
        (error: Error) => {
          errors++
          if (errorSamples.length < 5) errorSamples.push(error.message)
        },
      )
      .finally(() => {
        done++
        const nextSeq = backlog.shift()
        if (nextSeq !== undefined) dispatch(client, nextSeq)
        else idle.push(client)
        if (done === total) resolveDone()
      })
  }

  const started = nowMs()
  if (total === 0) resolveDone()
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const due = Math.min(total, Math.floor(((nowMs() - started) * args.ratePerSec) / 1000))
      while (sent < due) {
        const seq = sent++
        const client = idle.pop()
        if (client) dispatch(client, seq)
        else backlog.push(seq)
      }
      maxBacklog = Math.max(maxBacklog, backlog.length)
      if (sent >= total) {
        clearInterval(timer)
        resolve()
      }
    }, 1)
  })
  // Bounded: every UPDATE has 30 s at most to finish.
  await Promise.race([allDone, sleep(30_000)])
  const ms = nowMs() - started
  return { total, sent, done, errors, errorSamples, maxBacklog, ms, records }
}

/** One statement changing every job in `jobs` (one commit, one NOTIFY per job). */
async function once(args: { jobs: string[] }) {
  const client = clients[0]!
  const sendT = nowMs()
  const res = await client.query<{ id: string; version: string }>(
    `UPDATE job_queue SET progress = (progress::int + 1) % 100, step = $2
     WHERE id = ANY($1) RETURNING id, version`,
    [args.jobs, `t:${sendT.toFixed(3)}`],
  )
  const ackT = nowMs()
  return {
    sendT,
    ackT,
    versions: Object.fromEntries(res.rows.map((r) => [r.id, Number(r.version)])),
  }
}

/** Back-to-back UPDATEs on `writers` connections, each on its own row, for `durationMs`. */
async function throughput(args: { table: string; ids: string[]; durationMs: number }) {
  const writers = clients.slice(0, args.ids.length)
  const sql = UPDATE.replace('job_queue', args.table)
  const deadline = nowMs() + args.durationMs
  let commits = 0
  let errors = 0
  const started = nowMs()
  await Promise.all(
    writers.map(async (client, i) => {
      let seq = 0
      while (nowMs() < deadline) {
        try {
          await client.query(sql, [args.ids[i], seq % 100, `w${i}:${seq}`])
          commits++
        } catch {
          errors++
        }
        seq++
      }
    }),
  )
  const ms = nowMs() - started
  return { writers: writers.length, commits, errors, ms, perSec: (commits * 1000) / ms }
}

serve({ connect, run, once, throughput }, {}, async () => {
  await Promise.all(clients.map((c) => c.end().catch(() => undefined)))
})
