// Scenario 10: jobwire against the naive polling stream (bench/peers/polling-sse.ts), 1,000 SSE
// clients on 100 jobs while a writer changes the jobs at 10 updates/s (each job every 10 s, a
// typical progress-report pace) for 8 s (four polling periods). Each system runs alone with
// the same clients and writer. Cost: queries sent by the server (counted in its process);
// latency: writer's send time → client parsed the patch, median over all patches.
import { sleep } from '../lib/child.js'
import type { Context, ServerInfo } from '../lib/context.js'
import { JWT_SECRET, waitForServer } from '../lib/context.js'
import { seedJobs } from '../lib/database.js'
import { SseClientGroup } from '../lib/groups.js'
import { summarize } from '../lib/stats.js'
import { fmtMs, fmtNum, fmtRatio, verdict } from '../lib/table.js'
import type { ServerStats } from '../server/jobwire-server.js'

const JOBS = 100
const RATE_PER_SEC = 10
const WINDOW_MS = 8000
/** After the writer stops: one polling period, so the last changes reach polling clients. */
const TAIL_MS = 2500

export async function pollingScenario(ctx: Context): Promise<void> {
  const clientsCount = ctx.n(1000, 10)
  await ctx.scoped(async (scope) => {
    const jobs = await seedJobs(ctx.db, ctx.tenantId, JOBS)
    const [server, peer, clients, writer] = await Promise.all([
      ctx.startServer(scope),
      scope.start<ServerInfo>('peers/polling-sse.ts', {
        name: 'polling-sse',
        env: { DATABASE_URL: ctx.db.url, DB_POOL_MAX: '10', JWT_SECRET },
      }),
      SseClientGroup.start(scope, 2),
      scope.start('clients/writer.ts', { name: 'writer' }),
    ])
    await writer.call('connect', { url: ctx.db.url, connections: 2 })
    const targets = Array.from({ length: clientsCount }, (_, i) => {
      const job = jobs[i % JOBS]!
      return { job, path: `/v1/jobs/${job}/events` }
    })

    const phase = async (url: string, readQueries: () => Promise<number>) => {
      await clients.open(url, ctx.token, targets)
      await sleep(TAIL_MS) // polling in its steady state
      await clients.stats(true)
      const q0 = await readQueries()
      await writer.call('run', { jobs, ratePerSec: RATE_PER_SEC, durationMs: WINDOW_MS }, 90_000)
      await sleep(TAIL_MS)
      const q1 = await readQueries()
      const stats = await clients.stats(true)
      await clients.closeAll()
      const seconds = (WINDOW_MS + TAIL_MS) / 1000
      return {
        queriesPerSec: (q1 - q0) / seconds,
        queries: q1 - q0,
        latency: summarize(stats.latencies),
        patches: stats.patches,
        errors: stats.errors + stats.testFailures,
      }
    }

    const jobwire = await phase(server.info.url, async () => {
      const s = await server.call<ServerStats>('stats')
      return s.queries - s.listenerQueries
    })
    await waitForServer(server, (s) => s.streams === 0, 10_000)
    const polling = await phase(
      peer.info.url,
      async () => (await peer.call<{ queries: number }>('stats')).queries,
    )
    ctx.raw.polling = {
      clients: clientsCount,
      jobs: JOBS,
      ratePerSec: RATE_PER_SEC,
      windowMs: WINDOW_MS,
      jobwire,
      polling,
    }
    const fewer = polling.queriesPerSec / jobwire.queriesPerSec
    ctx.rows.push({
      n: 10,
      metric: `${clientsCount.toLocaleString('en-US')} SSE clients, ${JOBS} jobs, ${RATE_PER_SEC} updates/s: DB queries/s by the server`,
      jobwire: `${fmtNum(jobwire.queriesPerSec)} /s`,
      floor: `${fmtNum(polling.queriesPerSec)} /s naive polling (2 s)`,
      ratio: `${fmtRatio(fewer)} fewer`,
      target: '≥ 100 × fewer',
      verdict: verdict(fewer >= 100),
    })
    const faster = polling.latency.p50 / jobwire.latency.p50
    ctx.rows.push({
      n: 10,
      metric: `same: send → event median latency`,
      jobwire: fmtMs(jobwire.latency.p50),
      floor: `${fmtMs(polling.latency.p50)} naive polling`,
      ratio: `${fmtRatio(faster)} lower`,
      target: '≥ 100 × lower',
      verdict: verdict(faster >= 100 && jobwire.errors === 0 && polling.errors === 0),
    })
  })
}
