// Scenario 13: rows 2 and 6 on all cores (WEB_CONCURRENCY=2, bench/server/jobwire-cluster.ts).
//   fan-out: 10,000 SSE clients on one job, spread by the cluster over both workers; one UPDATE →
//     the last client has it, against the single-process bare-socket floor of this run (row 2's).
//   GET: /v1/jobs/:id with JWT + RLS under autocannon (50 connections), the cluster against one
//     process, rounds alternating (one, cluster, cluster, one).
// On this 2-core machine the load generators share the cores with the workers: the fan-out's 4
// client processes and autocannon compete with the second worker for the same CPU, which the
// table's floor column says.
import type { CannonResult } from '../clients/autocannon-runner.js'
import { sleep } from '../lib/child.js'
import type { Context, Scope, ServerInfo } from '../lib/context.js'
import { seedJobs } from '../lib/database.js'
import { SseClientGroup } from '../lib/groups.js'
import { median } from '../lib/stats.js'
import { fmtMs, fmtNum, fmtRatio, verdict } from '../lib/table.js'
import { fanoutFloor, FANOUT_ROUNDS } from './fanout-floor.js'
import { CLIENT_PROCESSES, fanoutRounds } from './fanout.js'

const WORKERS = 2
const CONNECTIONS = 50
const ROUND_SECONDS = 3
const ROUNDS = 2

export async function clusterScenario(ctx: Context): Promise<void> {
  const startCluster = (scope: Scope) =>
    scope.start<ServerInfo & { workerPids: number[] }>('server/jobwire-cluster.ts', {
      name: 'jobwire-cluster',
      env: ctx.serverEnv({ WEB_CONCURRENCY: String(WORKERS) }),
      readyTimeoutMs: 60_000,
    })

  const n = ctx.n(10_000, 10)
  await ctx.scoped(async (scope) => {
    const clients = await SseClientGroup.start(scope, CLIENT_PROCESSES)
    const floor = await fanoutFloor(ctx, scope, clients, n)
    const [job] = await seedJobs(ctx.db, ctx.tenantId, 1)
    const server = await startCluster(scope)
    const writer = await scope.start('clients/writer.ts', { name: 'writer' })
    await writer.call('connect', { url: ctx.db.url, connections: 1 })
    const opened = await clients.open(
      server.info.url,
      ctx.token,
      Array.from({ length: n }, () => ({ job: job!, path: `/v1/jobs/${job}/events` })),
    )
    if (opened.opened < n) throw new Error(`only ${opened.opened}/${n} streams opened`)
    await sleep(500)
    const { roundsMs } = await fanoutRounds(ctx.db, clients, writer, job!)
    await clients.closeAll()
    const lastMs = median(roundsMs)
    ctx.raw.clusterFanout = { clients: n, workers: WORKERS, roundsMs, lastMs, floor }
    const ratio = lastMs / floor.lastMs
    ctx.rows.push({
      n: 13,
      metric: `row 2 with WEB_CONCURRENCY=${WORKERS}: 1 update → ${n.toLocaleString('en-US')} SSE clients, last has it (median of ${FANOUT_ROUNDS})`,
      jobwire: fmtMs(lastMs),
      floor: `${fmtMs(floor.lastMs)} single-process bare node:http (clients on the same 2 cores)`,
      ratio: fmtRatio(ratio),
      target: '< 1 ×',
      verdict: verdict(ratio < 1),
    })
  })

  await ctx.scoped(async (scope) => {
    const [job] = await seedJobs(ctx.db, ctx.tenantId, 1)
    const [single, clustered, cannon] = await Promise.all([
      ctx.startServer(scope),
      startCluster(scope),
      scope.start('clients/autocannon-runner.ts', { name: 'autocannon' }),
    ])
    const load = (url: string, seconds: number) =>
      cannon.call<CannonResult>(
        'run',
        {
          url: `${url}/v1/jobs/${job}`,
          headers: { authorization: `Bearer ${ctx.token}` },
          connections: CONNECTIONS,
          durationSeconds: seconds,
        },
        (seconds + 30) * 1000,
      )
    await load(single.info.url, 1)
    await load(clustered.info.url, 1)
    const results = { single: [] as CannonResult[], cluster: [] as CannonResult[] }
    for (let round = 0; round < ROUNDS; round++) {
      const order =
        round % 2 === 0 ? (['single', 'cluster'] as const) : (['cluster', 'single'] as const)
      for (const which of order)
        results[which].push(
          await load(which === 'single' ? single.info.url : clustered.info.url, ROUND_SECONDS),
        )
    }
    const mean = (rs: CannonResult[]) => rs.reduce((a, r) => a + r.requestsPerSec, 0) / rs.length
    const failures = [...results.single, ...results.cluster].reduce(
      (a, r) => a + r.non2xx + r.errors + r.timeouts,
      0,
    )
    const ratio = mean(results.cluster) / mean(results.single)
    const p99 = (rs: CannonResult[]) => Math.max(...rs.map((r) => r.latencyP99))
    ctx.raw.clusterGet = { connections: CONNECTIONS, workers: WORKERS, results }
    ctx.rows.push({
      n: 13,
      metric: `row 6 with WEB_CONCURRENCY=${WORKERS}: GET /v1/jobs/:id req/s, JWT + RLS (p99 ${fmtMs(p99(results.cluster))})`,
      jobwire: `${fmtNum(mean(results.cluster))} req/s`,
      floor: `${fmtNum(mean(results.single))} req/s one process (p99 ${fmtMs(p99(results.single))}; autocannon on the same 2 cores)`,
      ratio: fmtRatio(ratio),
      target: '≥ 1.4 ×',
      verdict: verdict(ratio >= 1.4 && failures === 0),
    })
  })
}
