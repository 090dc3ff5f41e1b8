// Scenario 1: 1,000 SSE clients (2 processes) on 100 jobs, a writer doing 500 autocommit
// UPDATEs/s (10 s by default, 30 s with --full), and the raw LISTEN floor in the same run.
// Latency: writer's send time (in the row as step "t:<ms>") → client parsed the patch.
// Floor: the same send time → a bare pg LISTEN client received that (job, version).
// Lost: after the run every client's document must equal GET /v1/jobs/:id; versions a client
// did not see one by one must have been merged into a patch that applied (test op held).
import { sleep } from '../lib/child.js'
import { waitForServer, type Context } from '../lib/context.js'
import { seedJobs } from '../lib/database.js'
import { SseClientGroup } from '../lib/groups.js'
import { summarize } from '../lib/stats.js'
import { fmtMs, fmtRatio, verdict } from '../lib/table.js'
import type { WriteRecord } from '../clients/writer.js'

const JOBS = 100
const RATE_PER_SEC = 500
const WRITER_CONNECTIONS = 8

export async function latencyScenario(ctx: Context): Promise<void> {
  const clientsCount = ctx.n(1000, 10)
  const durationMs = ctx.options.full ? 30_000 : 10_000
  await ctx.scoped(async (scope) => {
    const jobs = await seedJobs(ctx.db, ctx.tenantId, JOBS)
    const server = await ctx.startServer(scope)
    const [clients, raw, writer] = await Promise.all([
      SseClientGroup.start(scope, 2),
      scope.start('floors/raw-listen.ts', { name: 'raw-listen' }),
      scope.start('clients/writer.ts', { name: 'writer' }),
    ])
    await raw.call('listen', { url: ctx.db.url })
    await writer.call('connect', { url: ctx.db.url, connections: WRITER_CONNECTIONS })
    const targets = Array.from({ length: clientsCount }, (_, i) => {
      const job = jobs[i % JOBS]!
      return { job, path: `/v1/jobs/${job}/events` }
    })
    await clients.open(server.info.url, ctx.token, targets)
    await waitForServer(server, (s) => s.streams >= clientsCount, 10_000)
    await sleep(500)
    await clients.stats(true)
    await raw.call('collect', { reset: true })
    const before = await server.call<{ fetches: number; notifications: number }>('stats')

    const w = await writer.call<{
      total: number
      done: number
      errors: number
      errorSamples: string[]
      maxBacklog: number
      ms: number
      records: WriteRecord[]
    }>('run', { jobs, ratePerSec: RATE_PER_SEC, durationMs }, durationMs + 60_000)

    // Convergence: every client must end on the row as the API returns it.
    const docs: Record<string, Record<string, unknown>> = {}
    for (const job of jobs)
      docs[job] = await ctx.fetchJson<Record<string, unknown>>(`${server.info.url}/v1/jobs/${job}`)
    const verified = await clients.verify(docs, 10_000)
    const stats = await clients.stats()
    const after = await server.call<{ fetches: number; notifications: number }>('stats')

    const sent = new Map(w.records.map((r) => [`${r.job}:${r.version}`, r.sendT]))
    const rawSamples: number[] = []
    const received = await raw.call<Array<[string, number, number]>>('collect', {})
    for (const [job, version, t] of received) {
      const sendT = sent.get(`${job}:${version}`)
      if (sendT !== undefined) rawSamples.push(t - sendT)
    }
    const jobwire = summarize(stats.latencies)
    const floor = summarize(rawSamples)
    const lost =
      verified.behind + verified.mismatched + stats.testFailures + stats.backwards + stats.errors
    const achievedRate = (w.done * 1000) / w.ms
    ctx.raw.latency = {
      clients: clientsCount,
      jobs: JOBS,
      ratePerSec: RATE_PER_SEC,
      achievedRate,
      durationMs,
      writer: { ...w, records: undefined },
      jobwire,
      rawListen: { ...floor, received: received.length },
      verified,
      clientStats: { ...stats, latencies: undefined },
      hub: {
        notifications: after.notifications - before.notifications,
        fetches: after.fetches - before.fetches,
      },
    }
    const label = `${clientsCount.toLocaleString('en-US')} SSE clients, ${JOBS} jobs, ${Math.round(achievedRate)} updates/s × ${durationMs / 1000} s`
    ctx.rows.push({
      n: 1,
      metric: `${label}: send → event p50`,
      jobwire: fmtMs(jobwire.p50),
      floor: `${fmtMs(floor.p50)} raw LISTEN`,
      ratio: fmtRatio(jobwire.p50 / floor.p50),
      target: '≤ 3 × and ≤ 2 ms',
      verdict: verdict(jobwire.p50 <= 3 * floor.p50 && jobwire.p50 <= 2),
    })
    ctx.rows.push({
      n: 1,
      metric: `${label}: send → event p99`,
      jobwire: fmtMs(jobwire.p99),
      floor: `${fmtMs(floor.p99)} raw LISTEN`,
      ratio: fmtRatio(jobwire.p99 / floor.p99),
      target: '≤ 20 ms',
      verdict: verdict(jobwire.p99 <= 20),
    })
    ctx.rows.push({
      n: 1,
      metric: `${label}: events lost`,
      jobwire: `${lost} lost (${stats.patches.toLocaleString('en-US')} patches, ${stats.merged} versions merged)`,
      floor: `${verified.checked} clients = row at the end`,
      ratio: '—',
      target: '0 lost',
      verdict: verdict(lost === 0 && w.errors === 0),
    })
  })
}
