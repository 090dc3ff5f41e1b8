// Scenario 8: one slow client. An SSE client stops reading its socket (the server's send
// buffer fills and stays full) while its job changes 10,000 times (a writer at up to 2,500
// UPDATEs/s). The server's RSS is sampled every 250 ms (peak, no GC) and read again after a
// forced GC with the client still paused; then the client reads again and must converge to
// the row (one merged patch from what it last had). Control, same run: a fresh server doing
// the same 10,000 changes for a client that reads normally. What the slow client costs is
// the difference of the two growths, which must stay within 5 MB.
import { nowMs, sleep } from '../lib/child.js'
import { waitForServer, type Context, type Scope } from '../lib/context.js'
import { seedJobs } from '../lib/database.js'
import { SseClientGroup } from '../lib/groups.js'
import { fmtNum, verdict } from '../lib/table.js'

const UPDATES = 10_000
const RATE_PER_SEC = 2500
const LIMIT_KIB = 5 * 1024

interface Gc {
  memory: NodeJS.MemoryUsage
}

async function run(ctx: Context, scope: Scope, updates: number, isPaused: boolean) {
  const [job] = await seedJobs(ctx.db, ctx.tenantId, 1)
  const [server, client, writer] = await Promise.all([
    ctx.startServer(scope),
    SseClientGroup.start(scope, 1),
    scope.start('clients/writer.ts', { name: 'writer' }),
  ])
  await writer.call('connect', { url: ctx.db.url, connections: 4 })
  await client.open(server.info.url, ctx.token, [{ job: job!, path: `/v1/jobs/${job}/events` }])
  await waitForServer(server, (s) => s.streams >= 1, 5000)
  await sleep(500)
  const heapBefore = (await server.call<Gc>('gc')).memory.heapUsed
  const rssBeforeKiB = server.rssKiB()
  if (isPaused) await client.pauseAll()

  let peakKiB = rssBeforeKiB
  let isSampling = true
  const sampler = (async () => {
    while (isSampling) {
      peakKiB = Math.max(peakKiB, server.rssKiB())
      await sleep(250)
    }
  })()
  const started = nowMs()
  const w = await writer.call<{ done: number; errors: number }>(
    'run',
    { jobs: [job], ratePerSec: RATE_PER_SEC, durationMs: (updates * 1000) / RATE_PER_SEC },
    120_000,
  )
  const writeMs = nowMs() - started
  await sleep(1000)
  isSampling = false
  await sampler
  const heapAfter = (await server.call<Gc>('gc')).memory.heapUsed
  const rssAfterKiB = server.rssKiB()

  if (isPaused) await client.resumeAll()
  const doc = await ctx.fetchJson<Record<string, unknown>>(`${server.info.url}/v1/jobs/${job}`)
  const verified = await client.verify({ [job!]: doc }, 15_000)
  const stats = await client.stats()
  await Promise.all([server.stop(), client.closeAll()])
  return {
    updates: w.done,
    writerErrors: w.errors,
    writeMs,
    rssBeforeKiB,
    peakKiB,
    rssAfterKiB,
    growthKiB: rssAfterKiB - rssBeforeKiB,
    heapGrowthKiB: (heapAfter - heapBefore) / 1024,
    converged: verified.behind === 0 && verified.mismatched === 0,
    verified,
    patches: stats.patches,
    merged: stats.merged,
    clientErrors: stats.errors + stats.testFailures,
  }
}

export async function slowClientScenario(ctx: Context): Promise<void> {
  const updates = ctx.n(UPDATES, 100)
  await ctx.scoped(async (scope) => {
    const control = await run(ctx, scope, updates, false)
    const slow = await run(ctx, scope, updates, true)
    ctx.raw.slowClient = { control, slow }
    const costKiB = slow.growthKiB - control.growthKiB
    ctx.rows.push({
      n: 8,
      metric: `1 paused SSE client while its job changes ${slow.updates.toLocaleString('en-US')} times: server RSS growth after GC (then ${slow.patches} patches, ${slow.merged} versions merged; heap +${fmtNum(slow.heapGrowthKiB / 1024)} MB)`,
      jobwire: `${fmtNum(slow.growthKiB / 1024)} MB (peak +${fmtNum((slow.peakKiB - slow.rssBeforeKiB) / 1024)} MB)`,
      floor: `${fmtNum(control.growthKiB / 1024)} MB same changes, client reading`,
      ratio: `${costKiB < 0 ? '−' : '+'}${fmtNum(Math.abs(costKiB) / 1024)} MB`,
      target: '≤ 5 MB above control; converges',
      verdict: verdict(
        costKiB <= LIMIT_KIB &&
          slow.converged &&
          control.converged &&
          slow.writerErrors + slow.clientErrors === 0,
      ),
    })
  })
}
