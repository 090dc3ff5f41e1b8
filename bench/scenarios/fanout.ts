// Scenarios 2 and 3: 10,000 SSE clients (in 4 client processes) watch one job.
//   3. server RSS above empty per idle connection (after a forced GC), vs node:http;
//   2. one UPDATE → time until the last client parsed the patch, vs the bare-socket floor.
// Origin for jobwire: just before the writer sends the UPDATE (so it includes commit,
// NOTIFY, the hub's read and the fan-out); for the floor: just before the first write().
// Each side runs one uncounted warm-up round, then the median of 5.
import { sleep, type BenchChild } from '../lib/child.js'
import type { Context, ServerChild } from '../lib/context.js'
import { waitForServer } from '../lib/context.js'
import { currentVersions, seedJobs, type BenchDatabase } from '../lib/database.js'
import { SseClientGroup } from '../lib/groups.js'
import { median, round, summarize } from '../lib/stats.js'
import { fmtMs, fmtNum, fmtRatio, verdict } from '../lib/table.js'
import { FANOUT_ROUNDS, FANOUT_WARMUP_ROUNDS, fanoutFloor } from './fanout-floor.js'

export const CLIENT_PROCESSES = 4

/**
 * The timed rounds on open streams: one UPDATE per round, the time until the last client has
 * the new version (from just before the writer sends it). With `server`, the hub reads per round.
 */
export async function fanoutRounds(
  db: BenchDatabase,
  clients: SseClientGroup,
  writer: BenchChild,
  job: string,
  server?: ServerChild,
): Promise<{ roundsMs: number[]; fetchesPerRound: number[] }> {
  const roundsMs: number[] = []
  const fetchesPerRound: number[] = []
  const fetches = async () => (await server?.call<{ fetches: number }>('stats'))?.fetches ?? 0
  let version = (await currentVersions(db, [job])).get(job)!
  for (let r = -FANOUT_WARMUP_ROUNDS; r < FANOUT_ROUNDS; r++) {
    await clients.arm(++version, job)
    const before = await fetches()
    const w = await writer.call<{ sendT: number; versions: Record<string, number> }>('once', {
      jobs: [job],
    })
    if (w.versions[job] !== version) throw new Error(`expected version ${version}`)
    const got = await clients.collect(15_000)
    if (got.reached < got.total)
      throw new Error(`round ${r}: ${got.reached}/${got.total} clients got version ${version}`)
    const after = await fetches()
    if (r >= 0) {
      roundsMs.push(Math.max(...got.times) - w.sendT)
      fetchesPerRound.push(after - before)
    }
    await sleep(300)
  }
  return { roundsMs, fetchesPerRound }
}

export async function fanoutScenario(ctx: Context): Promise<void> {
  const n = ctx.n(10_000, 10)
  await ctx.scoped(async (scope) => {
    const clients = await SseClientGroup.start(scope, CLIENT_PROCESSES)
    const floor = await fanoutFloor(ctx, scope, clients, n)

    const [job] = await seedJobs(ctx.db, ctx.tenantId, 1)
    const server = await ctx.startServer(scope)
    const writer = await scope.start('clients/writer.ts', { name: 'writer' })
    await writer.call('connect', { url: ctx.db.url, connections: 1 })
    await sleep(500)
    await server.call('gc')
    const rssEmptyKiB = server.rssKiB()

    const opened = await clients.open(
      server.info.url,
      ctx.token,
      Array.from({ length: n }, () => ({ job: job!, path: `/v1/jobs/${job}/events` })),
    )
    await waitForServer(server, (s) => s.streams >= n, 10_000)
    await sleep(500)
    await server.call('gc')
    const rssFullKiB = server.rssKiB()
    const rssPerConnKiB = (rssFullKiB - rssEmptyKiB) / n

    const { roundsMs, fetchesPerRound } = await fanoutRounds(ctx.db, clients, writer, job!, server)
    const stats = await clients.stats()
    const lastMs = median(roundsMs)
    ctx.raw.fanout = {
      clients: n,
      openMs: opened.ms,
      roundsMs,
      lastMs,
      fetchesPerRound,
      rssEmptyKiB,
      rssFullKiB,
      rssPerConnKiB,
      clientLatency: summarize(stats.latencies),
      clientErrors: stats.errors,
      floor,
      patchFrameBytes: stats.lastPatchBytes,
    }
    const ratio = lastMs / floor.lastMs
    ctx.rows.push({
      n: 2,
      metric: `1 update → ${n.toLocaleString('en-US')} SSE clients: last client has it (median of ${FANOUT_ROUNDS})`,
      jobwire: fmtMs(lastMs),
      floor: `${fmtMs(floor.lastMs)} bare node:http (${floor.frameBytes} B frame; jobwire ${stats.lastPatchBytes} B)`,
      ratio: fmtRatio(ratio),
      target: '≤ 1.2 ×',
      verdict: verdict(ratio <= 1.2 && stats.errors === 0),
    })
    const memRatio = rssPerConnKiB / floor.rssPerConnKiB
    ctx.rows.push({
      n: 3,
      metric: `RSS per idle SSE connection (${n.toLocaleString('en-US')}, after GC)`,
      jobwire: `${fmtNum(round(rssPerConnKiB * 1.024, 1))} KB`,
      floor: `${fmtNum(round(floor.rssPerConnKiB * 1.024, 1))} KB node:http`,
      ratio: fmtRatio(memRatio),
      target: '≤ 1.5 ×',
      verdict: verdict(memRatio <= 1.5),
    })
    await clients.closeAll()
  })
}
