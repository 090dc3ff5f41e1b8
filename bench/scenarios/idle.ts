// Scenario 4: 10,000 idle watchers (5,000 SSE + 5,000 parked long-polls, 100 jobs) for a
// window of 12 s (60 s with --full). Database cost = pg_stat_database.xact_commit delta of
// the bench database during the window, minus the same window measured with the server up
// and nobody watching (the baseline: the listener's keep-alive ping and the like). Beside it,
// the exact number of queries the server's pool sent in the window minus the baseline's
// (counted in the server child; the listener's keep-alive pings excluded; the lease reaper
// off): that figure decides pass/fail, because
// PostgreSQL may hold a backend's counters back for up to a minute. The only allowed cost is
// the safety sweep: one batched read per SWEEP_INTERVAL_MS.
import { sleep } from '../lib/child.js'
import { waitForServer, type Context } from '../lib/context.js'
import {
  countTransactions,
  currentVersions,
  seedJobs,
  STATS_SETTLE_AFTER_MS,
  STATS_SETTLE_BEFORE_MS,
} from '../lib/database.js'
import { LongPollGroup, SseClientGroup } from '../lib/groups.js'
import { fmtNum, verdict } from '../lib/table.js'
import type { ServerStats } from '../server/jobwire-server.js'

const JOBS = 100
const SWEEP_INTERVAL_MS = 30_000

export async function idleScenario(ctx: Context): Promise<void> {
  const total = ctx.n(10_000, 20)
  const sseCount = Math.floor(total / 2)
  const pollCount = total - sseCount
  const windowMs = ctx.options.full ? 60_000 : 12_000
  await ctx.scoped(async (scope) => {
    const jobs = await seedJobs(ctx.db, ctx.tenantId, JOBS)
    const versions = await currentVersions(ctx.db, jobs)
    const server = await ctx.startServer(scope, {
      SWEEP_INTERVAL_MS: String(SWEEP_INTERVAL_MS),
      // The lease reaper is a worker feature (one query per 10 s whoever watches); off here so
      // that the windows count only what watchers cause.
      LEASE_REAPER_INTERVAL_MS: '0',
    })
    const [sse, polls] = await Promise.all([
      SseClientGroup.start(scope, 2),
      LongPollGroup.start(scope, 2),
    ])
    const readHub = () => server.call<ServerStats>('stats')
    const poolQueries = (a: ServerStats, b: ServerStats) =>
      b.queries - b.listenerQueries - (a.queries - a.listenerQueries)

    // Baseline: the server up, nobody watching.
    const hub0 = await readHub()
    const baseline = await countTransactions(ctx.db, () => sleep(windowMs))
    const hub1 = await readHub()

    await sse.open(
      server.info.url,
      ctx.token,
      Array.from({ length: sseCount }, (_, i) => {
        const job = jobs[i % JOBS]!
        return { job, path: `/v1/jobs/${job}/events` }
      }),
    )
    // The waiters stay parked well past the window: a time-out and re-poll would be a query.
    const pollTimeoutSeconds =
      Math.ceil((windowMs + STATS_SETTLE_BEFORE_MS + STATS_SETTLE_AFTER_MS) / 1000) + 60
    await polls.park(
      server.info.url,
      ctx.token,
      Array.from({ length: pollCount }, (_, i) => {
        const job = jobs[i % JOBS]!
        return { job, since: versions.get(job)! }
      }),
      pollTimeoutSeconds,
    )
    const ready = await waitForServer(server, (s) => s.watchers >= total, 30_000)
    if (ready.watchers < total)
      throw new Error(`only ${ready.watchers}/${total} watchers registered`)

    const hub2 = await readHub()
    const watched = await countTransactions(ctx.db, () => sleep(windowMs))
    const hub3 = await readHub()
    const pollStats = await polls.stats()
    const sseStats = await sse.stats()

    const caused = watched.transactions - baseline.transactions
    const queries = poolQueries(hub2, hub3) - poolQueries(hub0, hub1)
    const measuredMs = windowMs + STATS_SETTLE_AFTER_MS
    const sweepAllowance = Math.ceil(measuredMs / SWEEP_INTERVAL_MS)
    ctx.raw.idle = {
      watchers: total,
      sse: sseCount,
      longPoll: pollCount,
      windowMs,
      settleMs: [STATS_SETTLE_BEFORE_MS, STATS_SETTLE_AFTER_MS],
      baselineTransactions: baseline.transactions,
      watchedTransactions: watched.transactions,
      caused,
      sweepAllowance,
      poolQueriesBaseline: poolQueries(hub0, hub1),
      poolQueriesWatched: poolQueries(hub2, hub3),
      causedQueries: queries,
      listenerQueriesWatched: hub3.listenerQueries - hub2.listenerQueries,
      hubFetchesBaseline: hub1.fetches - hub0.fetches,
      hubFetchesWatched: hub3.fetches - hub2.fetches,
      longPollAnsweredDuringWindow: pollStats.answered,
      sseOpen: sseStats.open,
    }
    ctx.rows.push({
      n: 4,
      metric: `${total.toLocaleString('en-US')} idle watchers (${sseCount} SSE + ${pollCount} long-poll), ${measuredMs / 1000} s: DB queries caused`,
      jobwire: `${queries} pool queries (${hub3.fetches - hub2.fetches} hub reads); xact_commit Δ ${fmtNum(caused)}`,
      floor: `baseline: ${poolQueries(hub0, hub1)} queries, ${baseline.transactions} tx`,
      ratio: '—',
      target: `≤ ${sweepAllowance} (sweep every ${SWEEP_INTERVAL_MS / 1000} s)`,
      verdict: verdict(queries <= sweepAllowance && pollStats.answered === 0),
    })
    await Promise.all([sse.closeAll(), polls.closeAll()])
  })
}
