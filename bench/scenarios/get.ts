// Scenario 6: GET /v1/jobs/:id under load (autocannon, 50 connections, in its own process)
// with JWT + RLS (jobwire) against the same route without JWT and RLS (bench/peers/plain-get.ts),
// both on express 5 with a pool of 10 against the same database and row. Rounds alternate the
// order (peer, jobwire, jobwire, peer) so that drift on a shared machine hits both alike.
import type { CannonResult } from '../clients/autocannon-runner.js'
import { JWT_SECRET, type Context, type ServerInfo } from '../lib/context.js'
import { seedJobs } from '../lib/database.js'
import { fmtMs, fmtNum, fmtRatio, verdict } from '../lib/table.js'

const CONNECTIONS = 50
const ROUND_SECONDS = 5
const ROUNDS = 2

export async function getScenario(ctx: Context): Promise<void> {
  await ctx.scoped(async (scope) => {
    const [job] = await seedJobs(ctx.db, ctx.tenantId, 1)
    const [server, peer, cannon] = await Promise.all([
      ctx.startServer(scope),
      scope.start<ServerInfo>('peers/plain-get.ts', {
        name: 'plain-get',
        env: { DATABASE_URL: ctx.db.url, DB_POOL_MAX: '10', JWT_SECRET },
      }),
      scope.start('clients/autocannon-runner.ts', { name: 'autocannon' }),
    ])
    const targets = {
      jobwire: {
        url: `${server.info.url}/v1/jobs/${job}`,
        headers: { authorization: `Bearer ${ctx.token}` },
      },
      plain: { url: `${peer.info.url}/v1/jobs/${job}`, headers: {} },
    }
    const load = (which: keyof typeof targets, seconds: number) =>
      cannon.call<CannonResult>(
        'run',
        { ...targets[which], connections: CONNECTIONS, durationSeconds: seconds },
        (seconds + 30) * 1000,
      )
    await load('plain', 1)
    await load('jobwire', 1)
    const results: Record<keyof typeof targets, CannonResult[]> = { jobwire: [], plain: [] }
    for (let round = 0; round < ROUNDS; round++) {
      const order: Array<keyof typeof targets> =
        round % 2 === 0 ? ['plain', 'jobwire'] : ['jobwire', 'plain']
      for (const which of order) results[which].push(await load(which, ROUND_SECONDS))
    }
    const mean = (rs: CannonResult[]) => rs.reduce((a, r) => a + r.requestsPerSec, 0) / rs.length
    const jobwireRps = mean(results.jobwire)
    const plainRps = mean(results.plain)
    const p99 = Math.max(...results.jobwire.map((r) => r.latencyP99))
    const failures = [...results.jobwire, ...results.plain].reduce(
      (a, r) => a + r.non2xx + r.errors + r.timeouts,
      0,
    )
    ctx.raw.get = { connections: CONNECTIONS, roundSeconds: ROUND_SECONDS, results }
    const ratio = jobwireRps / plainRps
    ctx.rows.push({
      n: 6,
      metric: `GET /v1/jobs/:id, ${CONNECTIONS} connections, ${ROUNDS}×${ROUND_SECONDS} s: req/s with JWT + RLS (p99 ${fmtMs(p99)})`,
      jobwire: `${fmtNum(jobwireRps)} req/s`,
      floor: `${fmtNum(plainRps)} req/s without JWT/RLS (p99 ${fmtMs(Math.max(...results.plain.map((r) => r.latencyP99)))})`,
      ratio: fmtRatio(ratio),
      target: '≥ 0.7 ×; p99 ≤ 30 ms',
      verdict: verdict(ratio >= 0.7 && p99 <= 30 && failures === 0),
    })
  })
}
