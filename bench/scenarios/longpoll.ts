// Scenario 5: 10,000 parked long-poll waiters (100 jobs × 100, `since` = current version,
// 4 client processes). First the database cost while parked: the exact number of queries the
// server's pool sent during a 5 s window (listener keep-alive pings excluded), with the
// xact_commit delta beside it; then one UPDATE statement changes all 100 jobs
// (one commit, 100 NOTIFYs) and we time "just before the UPDATE is sent" → "the last waiter
// has its full answer parsed". Compared with the 10k bare-socket fan-out floor of this run.
import { sleep } from '../lib/child.js'
import { waitForServer, type Context, type Scope, type ServerInfo } from '../lib/context.js'
import {
  countTransactions,
  currentVersions,
  seedJobs,
  STATS_SETTLE_AFTER_MS,
} from '../lib/database.js'
import { LongPollGroup, SseClientGroup } from '../lib/groups.js'
import { percentile } from '../lib/stats.js'
import { fmtMs, fmtRatio, verdict } from '../lib/table.js'
import type { ServerStats } from '../server/jobwire-server.js'
import { CLIENT_PROCESSES } from './fanout.js'
import { fanoutFloor } from './fanout-floor.js'

const JOBS = 100
const PARKED_WINDOW_MS = 5000
const SWEEP_INTERVAL_MS = 30_000

/**
 * The bare long-poll floor of this run: the same client processes park the same requests on
 * bench/floors/bare-longpoll-server.ts, which answers them all at once; "first end() call" →
 * "the last client parsed its answer".
 */
async function bareLongPollFloor(
  ctx: Context,
  scope: Scope,
  targets: Array<{ job: string; since: number }>,
): Promise<{ waiters: number; lastMs: number; p50Ms: number; answerLoopMs: number }> {
  const [server, polls] = await Promise.all([
    scope.start<ServerInfo>('floors/bare-longpoll-server.ts', { name: 'bare-longpoll-server' }),
    LongPollGroup.start(scope, CLIENT_PROCESSES),
  ])
  await polls.park(server.info.url, ctx.token, targets, 120)
  const deadline = Date.now() + 30_000
  while ((await server.call<number>('count')) < targets.length) {
    if (Date.now() > deadline) throw new Error('the bare long-poll floor never parked everyone')
    await sleep(50)
  }
  await sleep(500)
  const b = await server.call<{ t0: number; t1: number }>('broadcast')
  const got = await polls.collect(20_000)
  if (got.answered < got.total || got.changed < got.total)
    throw new Error(`bare long-poll floor: ${got.changed}/${got.total} answered with a change`)
  const times = got.times.map((t) => t - b.t0).sort((x, y) => x - y)
  return {
    waiters: targets.length,
    lastMs: times[times.length - 1]!,
    p50Ms: percentile(times, 50),
    answerLoopMs: b.t1 - b.t0,
  }
}

export async function longPollScenario(ctx: Context): Promise<void> {
  const total = ctx.n(10_000, JOBS)
  await ctx.scoped(async (scope) => {
    // The floor is shared with the fan-out scenario when both run; otherwise measured here.
    const floor = await ctx.scoped(async (floorScope) =>
      fanoutFloor(ctx, floorScope, await SseClientGroup.start(floorScope, CLIENT_PROCESSES), total),
    )
    const jobs = await seedJobs(ctx.db, ctx.tenantId, JOBS)
    const versions = await currentVersions(ctx.db, jobs)
    const targets = Array.from({ length: total }, (_, i) => {
      const job = jobs[i % JOBS]!
      return { job, since: versions.get(job)! }
    })
    const bare = await ctx.scoped((floorScope) => bareLongPollFloor(ctx, floorScope, targets))
    const server = await ctx.startServer(scope, {
      SWEEP_INTERVAL_MS: String(SWEEP_INTERVAL_MS),
      LEASE_REAPER_INTERVAL_MS: '0', // a worker feature: one query per 10 s, watchers or not
    })
    const [polls, writer] = await Promise.all([
      LongPollGroup.start(scope, CLIENT_PROCESSES),
      scope.start('clients/writer.ts', { name: 'writer' }),
    ])
    await writer.call('connect', { url: ctx.db.url, connections: 1 })
    const readHub = () => server.call<ServerStats>('stats')
    await polls.park(server.info.url, ctx.token, targets, 120)
    const ready = await waitForServer(server, (s) => s.watchers >= total, 30_000)
    if (ready.watchers < total) throw new Error(`only ${ready.watchers}/${total} waiters parked`)
    const hub0 = await readHub()
    const parked = await countTransactions(ctx.db, () => sleep(PARKED_WINDOW_MS))
    const hub1 = await readHub()

    const w = await writer.call<{ sendT: number; ackT: number }>('once', { jobs })
    const got = await polls.collect(20_000)
    const hub2 = await readHub()
    if (got.answered < got.total || got.changed < got.total)
      throw new Error(
        `${got.answered}/${got.total} answered, ${got.changed} with the change, ${got.timedOut} timed out, errors: ${got.errorSamples.join('; ')}`,
      )
    const times = got.times.map((t) => t - w.sendT).sort((a, b) => a - b)
    const lastMs = times[times.length - 1]!
    const parkedQueries =
      hub1.queries - hub1.listenerQueries - (hub0.queries - hub0.listenerQueries)
    const parkedReads = hub1.fetches - hub0.fetches
    const sweepAllowance = Math.ceil((PARKED_WINDOW_MS + STATS_SETTLE_AFTER_MS) / SWEEP_INTERVAL_MS)
    ctx.raw.longpoll = {
      waiters: total,
      jobs: JOBS,
      commitMs: w.ackT - w.sendT,
      firstMs: times[0],
      p50Ms: percentile(times, 50),
      lastMs,
      hubFetchesParked: hub1.fetches - hub0.fetches,
      hubFetchesForChange: hub2.fetches - hub1.fetches,
      parkedPoolQueries: parkedQueries,
      parkedTransactions: parked.transactions,
      parkedWindowMs: PARKED_WINDOW_MS,
      floor,
      bareLongPollFloor: bare,
    }
    const ratio = lastMs / floor.lastMs
    ctx.rows.push({
      n: 5,
      metric: `${total.toLocaleString('en-US')} parked long-polls, 1 UPDATE of ${JOBS} jobs: last answered (p50 ${fmtMs(percentile(times, 50))}; ${hub2.fetches - hub1.fetches} hub reads)`,
      jobwire: fmtMs(lastMs),
      floor: `${fmtMs(floor.lastMs)} bare-socket fan-out (${floor.clients.toLocaleString('en-US')})`,
      ratio: fmtRatio(ratio),
      target: '≤ 1.5 ×',
      verdict: verdict(ratio <= 1.5),
    })
    ctx.rows.push({
      n: 5,
      metric: `the same against answering ${total.toLocaleString('en-US')} parked requests on bare node:http (that floor is ${fmtRatio(bare.lastMs / floor.lastMs)} the fan-out floor)`,
      jobwire: fmtMs(lastMs),
      floor: `${fmtMs(bare.lastMs)} bare node:http long-poll`,
      ratio: fmtRatio(lastMs / bare.lastMs),
      target: '— (what the protocol costs, for reading the row above)',
      verdict: 'info',
    })
    ctx.rows.push({
      n: 5,
      metric: `${total.toLocaleString('en-US')} parked long-polls: DB queries in ${(PARKED_WINDOW_MS + STATS_SETTLE_AFTER_MS) / 1000} s parked`,
      jobwire: `${parkedQueries} pool queries (${parkedReads} hub reads)`,
      floor: `xact_commit Δ ${parked.transactions} (listener pings included)`,
      ratio: '—',
      target: `0 beyond the sweep (≤ ${sweepAllowance})`,
      verdict: verdict(parkedQueries <= sweepAllowance),
    })
  })
}
