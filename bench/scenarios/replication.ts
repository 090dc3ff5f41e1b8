// Scenario 14: the logical-replication event source (EVENT_SOURCE=replication), on a server
// with wal_level=logical that the bench starts itself (bench/lib/logical-server.ts) or
// BENCH_REPLICATION_URL. Everything is measured on that one server, in the same run:
//   * UPDATE commits/s at 1 and 8 writers through jobwire's triggers while a replicating
//     server is up (the NOTIFY switch off, so no NOTIFY), against raw UPDATE (job_queue_raw:
//     no trigger), and against the same triggers always notifying (row 7's case);
//   * what each way of keeping the trigger quiet costs: the switch row read in the trigger's
//     WHEN (as shipped), a setting read there instead (current_setting), the NOTIFY trigger
//     disabled (ALTER TABLE … DISABLE TRIGGER);
//   * scenario 1's latency with the replication source beside the NOTIFY source;
//   * WAL per UPDATE with REPLICA IDENTITY DEFAULT (as shipped) and FULL.
// Copies of job_queue (CREATE TABLE … LIKE job_queue INCLUDING ALL) carry the variants; each
// writer has its own connection and row; rounds alternate their order against drift.
import pg from 'pg'
import { sleep } from '../lib/child.js'
import { Context } from '../lib/context.js'
import { createBenchDatabase, seedJobs, type BenchDatabase } from '../lib/database.js'
import { startLogicalServer } from '../lib/logical-server.js'
import type { Summary } from '../lib/stats.js'
import { fmtMs, fmtNum, fmtRatio, verdict, type Row } from '../lib/table.js'
import { latencyScenario } from './latency.js'

const ROUND_MS = 3000
const ROUNDS = 2
const WAL_UPDATES = 2000

interface Throughput {
  writers: number
  commits: number
  errors: number
  ms: number
  perSec: number
}

/** The tables the writers update; `notify` is the WHEN of the copy's NOTIFY trigger. */
const VARIANTS = [
  { key: 'raw', table: 'job_queue_raw' },
  { key: 'switch', table: 'job_queue' }, // as migrated: WHEN (… AND jobwire_notify_wanted())
  { key: 'guc', table: 'job_queue_guc', notify: `current_setting('jobwire.notify', true) = 'on'` },
  { key: 'disabled', table: 'job_queue_nonotify' },
  { key: 'always', table: 'job_queue_always', notify: 'true' },
] as const
type VariantKey = (typeof VARIANTS)[number]['key']

/** The bench's Context with EVENT_SOURCE set for every server it starts. */
class SourceContext extends Context {
  constructor(
    db: BenchDatabase,
    options: Context['options'],
    private readonly eventSource: 'notify' | 'replication',
  ) {
    super(db, options)
  }

  override serverEnv(extra: Record<string, string> = {}): Record<string, string> {
    return super.serverEnv({ EVENT_SOURCE: this.eventSource, ...extra })
  }
}

export async function replicationScenario(ctx: Context): Promise<void> {
  const server = await startLogicalServer()
  let db: BenchDatabase | undefined
  try {
    db = await createBenchDatabase(server.adminUrl)
    const version = (await db.pool.query<{ server_version: string }>('SHOW server_version'))
      .rows[0]!.server_version
    const where = `PostgreSQL ${version.split(' ')[0]} ${server.kind}, wal_level=logical`
    const throughput = await measureThroughput(new SourceContext(db, ctx.options, 'replication'))
    const wal = await measureWalPerUpdate(db)
    const notify = await measureLatency(new SourceContext(db, ctx.options, 'notify'))
    const replication = await measureLatency(new SourceContext(db, ctx.options, 'replication'))
    ctx.raw.replication = { server: where, roundMs: ROUND_MS, throughput, wal, notify, replication }
    ctx.rows.push(...rows(where, throughput, wal, notify, replication))
  } finally {
    await db?.drop().catch(() => undefined)
    await server.stop()
  }
}

async function measureThroughput(ctx: SourceContext) {
  return ctx.scoped(async (scope) => {
    const pool = ctx.db.pool
    const ids = await seedJobs(ctx.db, ctx.tenantId, 8)
    for (const v of VARIANTS) {
      if (v.table === 'job_queue') continue
      await pool.query(`CREATE TABLE ${v.table} (LIKE job_queue INCLUDING ALL)`)
      await pool.query(`INSERT INTO ${v.table} SELECT * FROM job_queue WHERE id = ANY($1)`, [ids])
      if (v.key === 'raw') continue
      await pool.query(`CREATE TRIGGER ${v.table}_before BEFORE INSERT OR UPDATE ON ${v.table}
        FOR EACH ROW EXECUTE FUNCTION job_queue_before_write()`)
      if (!('notify' in v)) continue
      await pool.query(`CREATE TRIGGER ${v.table}_notify AFTER UPDATE ON ${v.table}
        FOR EACH ROW WHEN (NEW.version IS DISTINCT FROM OLD.version AND ${v.notify})
        EXECUTE FUNCTION job_queue_notify()`)
    }
    await ctx.startServer(scope)
    // The replicating server turns the switch off once it sees no listener.
    for (let i = 0; i < 100; i++) {
      const { rows } = await pool.query<{ notify: boolean }>(
        'SELECT notify FROM jobwire_event_source',
      )
      if (rows[0]?.notify === false) break
      await sleep(100)
    }
    const writer = await scope.start('clients/writer.ts', { name: 'writer' })
    await writer.call('connect', { url: ctx.db.url, connections: 8 })
    const measure = (table: string, writers: number, durationMs = ROUND_MS) =>
      writer.call<Throughput>(
        'throughput',
        { table, ids: ids.slice(0, writers), durationMs },
        durationMs + 60_000,
      )
    for (const v of VARIANTS) await measure(v.table, 1, 500) // warm-up: caches, plans
    const results = {} as Record<VariantKey, Record<1 | 8, Throughput[]>>
    for (const v of VARIANTS) results[v.key] = { 1: [], 8: [] }
    for (const writers of [1, 8] as const) {
      for (let round = 0; round < ROUNDS; round++) {
        const order = round % 2 === 0 ? VARIANTS : [...VARIANTS].reverse()
        for (const v of order) results[v.key][writers].push(await measure(v.table, writers))
      }
    }
    const mean = (key: VariantKey, writers: 1 | 8) =>
      results[key][writers].reduce((a, r) => a + r.perSec, 0) / results[key][writers].length
    const errors = Object.values(results)
      .flatMap((r) => [...r[1], ...r[8]])
      .reduce((a, r) => a + r.errors, 0)
    return {
      errors,
      results,
      perSec: Object.fromEntries(
        VARIANTS.map((v) => [v.key, { 1: mean(v.key, 1), 8: mean(v.key, 8) }]),
      ) as Record<VariantKey, Record<1 | 8, number>>,
    }
  })
}

/** WAL bytes per autocommit progress UPDATE of a job with a 1 KB payload, by REPLICA IDENTITY. */
async function measureWalPerUpdate(db: BenchDatabase) {
  const client = new pg.Client({ connectionString: db.url, application_name: 'jobwire-bench' })
  await client.connect()
  try {
    const out: Record<'default' | 'full', number> = { default: 0, full: 0 }
    for (const identity of ['default', 'full'] as const) {
      const table = `job_queue_wal_${identity}`
      await client.query(`CREATE TABLE ${table} (LIKE job_queue INCLUDING ALL)`)
      await client.query(`ALTER TABLE ${table} REPLICA IDENTITY ${identity.toUpperCase()}`)
      await client.query(`CREATE TRIGGER ${table}_before BEFORE INSERT OR UPDATE ON ${table}
        FOR EACH ROW EXECUTE FUNCTION job_queue_before_write()`)
      const { rows } = await client.query<{ id: string }>(
        `INSERT INTO ${table} (tenant_id, type, status, payload)
         VALUES (gen_random_uuid(), 'bench', 'running', jsonb_build_object('blob', repeat('x', 1000)))
         RETURNING id`,
      )
      const id = rows[0]!.id
      const lsn = async () =>
        (await client.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0]!
          .lsn
      const before = await lsn()
      for (let i = 0; i < WAL_UPDATES; i++)
        await client.query(`UPDATE ${table} SET progress = $2, step = $3 WHERE id = $1`, [
          id,
          i % 100,
          `step ${i}`,
        ])
      const { rows: diff } = await client.query<{ bytes: string }>(
        `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1)::text AS bytes`,
        [before],
      )
      out[identity] = Number(diff[0]!.bytes) / WAL_UPDATES
    }
    return out
  } finally {
    await client.end()
  }
}

async function measureLatency(ctx: SourceContext) {
  await latencyScenario(ctx)
  const raw = ctx.raw.latency as { jobwire: Summary; achievedRate: number; clients: number }
  const lost = ctx.rows.find((r) => r.metric.endsWith('events lost'))!
  return { ...raw, lostRow: lost }
}

function rows(
  where: string,
  t: Awaited<ReturnType<typeof measureThroughput>>,
  wal: Awaited<ReturnType<typeof measureWalPerUpdate>>,
  notify: Awaited<ReturnType<typeof measureLatency>>,
  replication: Awaited<ReturnType<typeof measureLatency>>,
): Row[] {
  const p = t.perSec
  const raw = (writers: 1 | 8) => `${fmtNum(p.raw[writers])} /s raw UPDATE (no trigger)`
  const label = `${replication.clients.toLocaleString('en-US')} SSE clients, 100 jobs, ${Math.round(replication.achievedRate)} updates/s`
  return [
    {
      n: 14,
      metric: `UPDATE commits/s, EVENT_SOURCE=replication (triggers, no NOTIFY), 1 writer (${where})`,
      jobwire: `${fmtNum(p.switch[1])} /s`,
      floor: raw(1),
      ratio: fmtRatio(p.switch[1] / p.raw[1]),
      target: 'report',
      verdict: 'info',
    },
    {
      n: 14,
      metric: 'UPDATE commits/s, EVENT_SOURCE=replication (triggers, no NOTIFY), 8 writers',
      jobwire: `${fmtNum(p.switch[8])} /s`,
      floor: raw(8),
      ratio: fmtRatio(p.switch[8] / p.raw[8]),
      target: '≥ 0.9 ×',
      verdict: verdict(p.switch[8] / p.raw[8] >= 0.9 && t.errors === 0),
    },
    {
      n: 14,
      metric: 'same server, triggers always NOTIFYing (row 7), 1 / 8 writers',
      jobwire: `${fmtNum(p.always[1])} / ${fmtNum(p.always[8])} /s`,
      floor: `${fmtNum(p.raw[1])} / ${fmtNum(p.raw[8])} /s raw UPDATE`,
      ratio: `${fmtRatio(p.always[1] / p.raw[1])} / ${fmtRatio(p.always[8] / p.raw[8])}`,
      target: 'report',
      verdict: 'info',
    },
    {
      n: 14,
      metric:
        'keeping NOTIFY quiet, 8 writers: switch row in WHEN (shipped) / setting in WHEN / NOTIFY trigger disabled',
      jobwire: `${fmtNum(p.switch[8])} / ${fmtNum(p.guc[8])} / ${fmtNum(p.disabled[8])} /s`,
      floor: raw(8),
      ratio: [p.switch[8], p.guc[8], p.disabled[8]].map((v) => fmtRatio(v / p.raw[8])).join(' / '),
      target: 'report',
      verdict: 'info',
    },
    {
      n: 14,
      metric: 'same, 1 writer',
      jobwire: `${fmtNum(p.switch[1])} / ${fmtNum(p.guc[1])} / ${fmtNum(p.disabled[1])} /s`,
      floor: raw(1),
      ratio: [p.switch[1], p.guc[1], p.disabled[1]].map((v) => fmtRatio(v / p.raw[1])).join(' / '),
      target: 'report',
      verdict: 'info',
    },
    {
      n: 14,
      metric: `${label}: send → event p50, replication source`,
      jobwire: fmtMs(replication.jobwire.p50),
      floor: `${fmtMs(notify.jobwire.p50)} NOTIFY source, same server`,
      ratio: fmtRatio(replication.jobwire.p50 / notify.jobwire.p50),
      target: 'beside NOTIFY’s',
      verdict: 'info',
    },
    {
      n: 14,
      metric: `${label}: send → event p99, replication source`,
      jobwire: fmtMs(replication.jobwire.p99),
      floor: `${fmtMs(notify.jobwire.p99)} NOTIFY source, same server`,
      ratio: fmtRatio(replication.jobwire.p99 / notify.jobwire.p99),
      target: 'beside NOTIFY’s',
      verdict: 'info',
    },
    {
      n: 14,
      metric: `${label}: events lost, replication source`,
      jobwire: replication.lostRow.jobwire,
      floor: `NOTIFY source: ${notify.lostRow.jobwire}`,
      ratio: '—',
      target: '0 lost',
      verdict: replication.lostRow.verdict,
    },
    {
      n: 14,
      metric: 'WAL per progress UPDATE (1 KB payload), REPLICA IDENTITY DEFAULT (shipped) / FULL',
      jobwire: `${Math.round(wal.default)} B`,
      floor: `${Math.round(wal.full)} B with FULL`,
      ratio: fmtRatio(wal.full / wal.default),
      target: 'report',
      verdict: 'info',
    },
  ]
}
