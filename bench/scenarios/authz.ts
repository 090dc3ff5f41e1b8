// Scenario 11: jobwire against per-subscriber authorisation (bench/peers/per-subscriber-authz.ts),
// 1,000 SSE subscribers on one job, 10 single-row UPDATEs, each waited for until every
// subscriber has it. Cost: queries the server sent per change (counted in its process; the
// listener's keep-alive pings excluded). Also the time until the last subscriber had it.
import { sleep } from '../lib/child.js'
import type { Context, ServerInfo } from '../lib/context.js'
import { JWT_SECRET } from '../lib/context.js'
import { currentVersions, seedJobs } from '../lib/database.js'
import { SseClientGroup } from '../lib/groups.js'
import { median } from '../lib/stats.js'
import { fmtMs, fmtNum, fmtRatio, verdict } from '../lib/table.js'
import type { ServerStats } from '../server/jobwire-server.js'

const UPDATES = 10

export async function authzScenario(ctx: Context): Promise<void> {
  const subscribers = ctx.n(1000, 10)
  await ctx.scoped(async (scope) => {
    const [job] = await seedJobs(ctx.db, ctx.tenantId, 1)
    const [server, peer, clients, writer] = await Promise.all([
      ctx.startServer(scope),
      scope.start<ServerInfo>('peers/per-subscriber-authz.ts', {
        name: 'authz-peer',
        env: { DATABASE_URL: ctx.db.url, DB_POOL_MAX: '10', JWT_SECRET },
      }),
      SseClientGroup.start(scope, 2),
      scope.start('clients/writer.ts', { name: 'writer' }),
    ])
    await writer.call('connect', { url: ctx.db.url, connections: 1 })
    const targets = Array.from({ length: subscribers }, () => ({
      job: job!,
      path: `/v1/jobs/${job}/events`,
    }))

    const phase = async (url: string, readQueries: () => Promise<number>) => {
      await clients.open(url, ctx.token, targets)
      await sleep(500)
      let version = (await currentVersions(ctx.db, [job!])).get(job!)!
      const q0 = await readQueries()
      const lastMs: number[] = []
      let missing = 0
      for (let u = 0; u < UPDATES; u++) {
        await clients.arm(++version, job)
        const w = await writer.call<{ sendT: number }>('once', { jobs: [job] })
        const got = await clients.collect(20_000)
        missing += got.total - got.reached
        lastMs.push(Math.max(...got.times) - w.sendT)
        await sleep(100)
      }
      const q1 = await readQueries()
      await clients.closeAll()
      return {
        queriesPerChange: (q1 - q0) / UPDATES,
        lastMs,
        medianLastMs: median(lastMs),
        missing,
      }
    }

    const jobwire = await phase(server.info.url, async () => {
      const s = await server.call<ServerStats>('stats')
      return s.queries - s.listenerQueries
    })
    const peerResult = await phase(
      peer.info.url,
      async () => (await peer.call<{ queries: number }>('stats')).queries,
    )
    ctx.raw.authz = { subscribers, updates: UPDATES, jobwire, peer: peerResult }
    ctx.rows.push({
      n: 11,
      metric: `${subscribers.toLocaleString('en-US')} subscribers on 1 job, ${UPDATES} changes: DB queries per change (last subscriber: ${fmtMs(jobwire.medianLastMs)} vs ${fmtMs(peerResult.medianLastMs)})`,
      jobwire: fmtNum(jobwire.queriesPerChange),
      floor: `${fmtNum(peerResult.queriesPerChange)} per-subscriber RLS re-read`,
      ratio: `${fmtRatio(peerResult.queriesPerChange / jobwire.queriesPerChange)} fewer`,
      target: '1 batched read per change',
      verdict: verdict(
        jobwire.queriesPerChange <= 1 && jobwire.missing === 0 && peerResult.missing === 0,
      ),
    })
  })
}
