// Scenario 9: two API processes on one database. The same SQL writer workload (200 UPDATEs/s
// for 5 s on 40 jobs) is timed first with 400 SSE clients on one process, then with 200 on
// each of two processes (every job watched on both). Then changes are made through the API of
// each process (POST /v1/jobs/:id/cancel: half the jobs through A, half through B), and every
// client on both processes must converge to the row.
import { sleep } from '../lib/child.js'
import { waitForServer, type Context, type ServerChild } from '../lib/context.js'
import { seedJobs } from '../lib/database.js'
import { SseClientGroup, type Target } from '../lib/groups.js'
import { summarize } from '../lib/stats.js'
import { fmtMs, fmtRatio, verdict } from '../lib/table.js'

const JOBS = 40
const RATE_PER_SEC = 200
const DURATION_MS = 5000

export async function multiScenario(ctx: Context): Promise<void> {
  const clientsCount = ctx.n(400, JOBS * 2)
  await ctx.scoped(async (scope) => {
    const jobs = await seedJobs(ctx.db, ctx.tenantId, JOBS)
    const [a, b, clients, writer] = await Promise.all([
      ctx.startServer(scope),
      ctx.startServer(scope),
      SseClientGroup.start(scope, 2),
      scope.start('clients/writer.ts', { name: 'writer' }),
    ])
    await writer.call('connect', { url: ctx.db.url, connections: 4 })
    const targets = (n: number): Target[] =>
      Array.from({ length: n }, (_, i) => {
        const job = jobs[i % JOBS]!
        return { job, path: `/v1/jobs/${job}/events` }
      })
    const write = () =>
      writer.call(
        'run',
        { jobs, ratePerSec: RATE_PER_SEC, durationMs: DURATION_MS },
        DURATION_MS + 60_000,
      )

    // One process.
    await clients.open(a.info.url, ctx.token, targets(clientsCount))
    await sleep(500)
    await clients.stats(true)
    await write()
    await sleep(500)
    const single = await clients.stats(true)
    await clients.closeAll()
    await waitForServer(a, (s) => s.streams === 0, 10_000)

    // Two processes, every job watched on both.
    const half = Math.floor(clientsCount / 2)
    await clients.open(a.info.url, ctx.token, targets(half))
    await clients.open(b.info.url, ctx.token, targets(clientsCount - half))
    await sleep(500)
    await clients.stats(true)
    await write()
    await sleep(500)
    const two = await clients.stats(true)

    // Changes through the API of either process reach watchers on both.
    const cancelThrough = async (server: ServerChild, ids: string[]) => {
      for (const id of ids) {
        const res = await fetch(`${server.info.url}/v1/jobs/${id}/cancel`, {
          method: 'POST',
          headers: { authorization: `Bearer ${ctx.token}` },
        })
        if (res.status >= 300) throw new Error(`cancel ${id}: ${res.status} ${await res.text()}`)
      }
    }
    await cancelThrough(a, jobs.slice(0, JOBS / 2))
    await cancelThrough(b, jobs.slice(JOBS / 2))
    const docs: Record<string, Record<string, unknown>> = {}
    for (const job of jobs)
      docs[job] = await ctx.fetchJson<Record<string, unknown>>(`${a.info.url}/v1/jobs/${job}`)
    const verified = await clients.verify(docs, 10_000)
    await clients.closeAll()

    const singleLatency = summarize(single.latencies)
    const twoLatency = summarize(two.latencies)
    const lost =
      verified.behind + verified.mismatched + two.errors + two.testFailures + two.backwards
    ctx.raw.multi = {
      clients: clientsCount,
      jobs: JOBS,
      single: singleLatency,
      two: twoLatency,
      verified,
      patchesSingle: single.patches,
      patchesTwo: two.patches,
    }
    const ratio = twoLatency.p50 / singleLatency.p50
    ctx.rows.push({
      n: 9,
      metric: `2 API processes, ${clientsCount} SSE clients on ${JOBS} jobs, ${RATE_PER_SEC} SQL updates/s + cancels through A and B: send → event p50 (p99 ${fmtMs(twoLatency.p99)} vs ${fmtMs(singleLatency.p99)})`,
      jobwire: `${fmtMs(twoLatency.p50)}; ${lost} lost of ${verified.checked} clients`,
      floor: `${fmtMs(singleLatency.p50)} one process`,
      ratio: fmtRatio(ratio),
      target: 'every change on both; ≤ 1.2 ×',
      verdict: verdict(ratio <= 1.2 && lost === 0),
    })
  })
}
