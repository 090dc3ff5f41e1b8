// Scenario 7: UPDATE throughput through jobwire's triggers (version bump, timestamps,
// NOTIFY) against the same UPDATEs on a copy of the table without triggers, RLS or NOTIFY
// (job_queue_raw, CREATE TABLE … (LIKE job_queue INCLUDING ALL): same columns, defaults,
// checks and indexes). Each writer has its own connection and its own row (no row-lock
// waits); the jobwire server is up, so its listener receives every NOTIFY. 1 writer decides
// the target; 8 writers show the ceiling that PostgreSQL's NOTIFY commit lock puts on it.
import type { Context } from '../lib/context.js'
import { seedJobs } from '../lib/database.js'
import { fmtNum, fmtRatio, verdict } from '../lib/table.js'

const ROUND_MS = 4000

interface Throughput {
  writers: number
  commits: number
  errors: number
  ms: number
  perSec: number
}

export async function updateScenario(ctx: Context): Promise<void> {
  await ctx.scoped(async (scope) => {
    const ids = await seedJobs(ctx.db, ctx.tenantId, 8)
    await ctx.db.pool.query(`CREATE TABLE job_queue_raw (LIKE job_queue INCLUDING ALL)`)
    await ctx.db.pool.query(
      `INSERT INTO job_queue_raw SELECT * FROM job_queue WHERE id = ANY($1)`,
      [ids],
    )
    await ctx.startServer(scope)
    const writer = await scope.start('clients/writer.ts', { name: 'writer' })
    await writer.call('connect', { url: ctx.db.url, connections: 8 })
    const measure = (table: string, writers: number) =>
      writer.call<Throughput>(
        'throughput',
        { table, ids: ids.slice(0, writers), durationMs: ROUND_MS },
        ROUND_MS + 60_000,
      )
    await measure('job_queue_raw', 1) // warm-up: caches, plans
    await measure('job_queue', 1)
    // Alternating rounds, so that drift on a shared machine hits both alike.
    const one = { raw: [] as Throughput[], trigger: [] as Throughput[] }
    for (let round = 0; round < 2; round++) {
      if (round % 2 === 0) {
        one.raw.push(await measure('job_queue_raw', 1))
        one.trigger.push(await measure('job_queue', 1))
      } else {
        one.trigger.push(await measure('job_queue', 1))
        one.raw.push(await measure('job_queue_raw', 1))
      }
    }
    const eight = {
      raw: await measure('job_queue_raw', 8),
      trigger: await measure('job_queue', 8),
    }
    const mean = (rs: Throughput[]) => rs.reduce((a, r) => a + r.perSec, 0) / rs.length
    const raw1 = mean(one.raw)
    const trig1 = mean(one.trigger)
    const errors = [...one.raw, ...one.trigger, eight.raw, eight.trigger].reduce(
      (a, r) => a + r.errors,
      0,
    )
    ctx.raw.update = { roundMs: ROUND_MS, one, eight }
    ctx.rows.push({
      n: 7,
      metric: 'UPDATE commits/s through the trigger, 1 writer',
      jobwire: `${fmtNum(trig1)} /s`,
      floor: `${fmtNum(raw1)} /s raw UPDATE (no trigger)`,
      ratio: fmtRatio(trig1 / raw1),
      target: '≥ 0.85 ×',
      verdict: verdict(trig1 / raw1 >= 0.85 && errors === 0),
    })
    ctx.rows.push({
      n: 7,
      metric: 'UPDATE commits/s through the trigger, 8 writers (NOTIFY commit-lock ceiling)',
      jobwire: `${fmtNum(eight.trigger.perSec)} /s`,
      floor: `${fmtNum(eight.raw.perSec)} /s raw UPDATE (no trigger)`,
      ratio: fmtRatio(eight.trigger.perSec / eight.raw.perSec),
      target: 'report the ceiling',
      verdict: 'info',
    })
  })
}
