// Scenario 12: jobwire against BullMQ QueueEvents → SSE (bench/peers/bullmq-sse.ts), the same
// workload on each: 200 SSE clients on 20 jobs (10 each), 100 progress updates/s for 6 s
// (600 updates, 6,000 delivered events). jobwire's writer sends autocommit UPDATEs; the
// BullMQ writer calls job.updateProgress(). Latency: send → client parsed the event. CPU:
// user + system time of the server process only (/proc/<pid>/stat) per 1,000 delivered
// events; PostgreSQL's and Redis's own CPU are not included on either side.
import { randomBytes } from 'node:crypto'
import { sleep } from '../lib/child.js'
import type { Context, ServerChild, ServerInfo } from '../lib/context.js'
import { JWT_SECRET } from '../lib/context.js'
import { seedJobs } from '../lib/database.js'
import { SseClientGroup, type Target } from '../lib/groups.js'
import { summarize } from '../lib/stats.js'
import { fmtMs, fmtNum, fmtRatio, verdict } from '../lib/table.js'
import type { BenchChild } from '../lib/child.js'
import type { WriteRecord } from '../clients/writer.js'

const JOBS = 20
const RATE_PER_SEC = 100
const DURATION_MS = 6000

export async function bullmqScenario(ctx: Context): Promise<void> {
  const perJob = Math.max(1, Math.round(ctx.n(200, JOBS) / JOBS))
  const bullEnv = {
    BULLMQ_QUEUE: `q-${randomBytes(4).toString('hex')}`,
    BULLMQ_PREFIX: 'jobwire-bench',
    REDIS_HOST: '127.0.0.1',
    REDIS_PORT: '6379',
    JWT_SECRET,
  }
  await ctx.scoped(async (scope) => {
    const clients = await SseClientGroup.start(scope, 2)
    const targetsFor = (ids: string[]): Target[] =>
      ids.flatMap((job) =>
        Array.from({ length: perJob }, () => ({ job, path: `/v1/jobs/${job}/events` })),
      )
    const measure = async (
      server: ServerChild,
      targets: Target[],
      write: () => Promise<unknown>,
    ) => {
      await clients.open(server.info.url, ctx.token, targets)
      await sleep(500)
      await clients.stats(true)
      const cpu0 = server.cpuMs()
      const written = await write()
      await sleep(1000)
      const cpu1 = server.cpuMs()
      const stats = await clients.stats(true)
      await clients.closeAll()
      return {
        latency: summarize(stats.latencies),
        delivered: stats.patches,
        cpuMs: cpu1 - cpu0,
        cpuMsPer1k: (cpu1 - cpu0) / (stats.patches / 1000),
        errors: stats.errors + stats.testFailures,
        written,
        server: await server.call('stats').catch(() => undefined),
      }
    }

    // jobwire: the writer as a worker writes by default, then with synchronous_commit=off (the
    // durability of the Redis peer, which runs without persistence)
    const jobs = await seedJobs(ctx.db, ctx.tenantId, JOBS)
    const [server, writer, raw] = await Promise.all([
      ctx.startServer(scope),
      scope.start('clients/writer.ts', { name: 'writer' }),
      scope.start('floors/raw-listen.ts', { name: 'raw-listen' }),
    ])
    await raw.call('listen', { url: ctx.db.url })
    // PostgreSQL's own part of the path: the writer's send → a bare LISTEN client has the
    // NOTIFY (raw LISTEN floor), for the same writes.
    const jobwireRun = async (synchronousCommit?: 'off') => {
      await writer.call('connect', { url: ctx.db.url, connections: 4, synchronousCommit })
      await raw.call('collect', { reset: true })
      let records: WriteRecord[] = []
      const result = await measure(server, targetsFor(jobs), async () => {
        const w = await writer.call<{ records: WriteRecord[] }>(
          'run',
          { jobs, ratePerSec: RATE_PER_SEC, durationMs: DURATION_MS },
          DURATION_MS + 60_000,
        )
        records = w.records
        return { ...w, records: undefined }
      })
      const sent = new Map(records.map((r) => [`${r.job}:${r.version}`, r.sendT]))
      const received = await raw.call<Array<[string, number, number]>>('collect', { reset: true })
      const rawListen = received.flatMap(([job, version, t]) => {
        const sendT = sent.get(`${job}:${version}`)
        return sendT === undefined ? [] : [t - sendT]
      })
      return { ...result, rawListen: summarize(rawListen) }
    }
    const jobwire = await jobwireRun()
    const jobwireAsync = await jobwireRun('off')
    await server.stop()

    // BullMQ
    const bullWriter: BenchChild = await scope.start('clients/bullmq-writer.ts', {
      name: 'bullmq-writer',
      env: bullEnv,
    })
    const bullIds = await bullWriter.call<string[]>('setup', { count: JOBS })
    const peer = await scope.start<ServerInfo>('peers/bullmq-sse.ts', {
      name: 'bullmq-sse',
      env: bullEnv,
    })
    const bull = await measure(peer, targetsFor(bullIds), () =>
      bullWriter.call(
        'run',
        { ratePerSec: RATE_PER_SEC, durationMs: DURATION_MS },
        DURATION_MS + 60_000,
      ),
    )
    await peer.stop()
    await bullWriter.stop() // obliterates the queue's keys

    ctx.raw.bullmq = {
      clients: perJob * JOBS,
      jobs: JOBS,
      ratePerSec: RATE_PER_SEC,
      durationMs: DURATION_MS,
      jobwire,
      jobwireSynchronousCommitOff: jobwireAsync,
      bullmq: bull,
    }
    ctx.rows.push({
      n: 12,
      metric: `${perJob * JOBS} SSE clients, ${JOBS} jobs, ${RATE_PER_SEC} updates/s: send → event p50 (p99 ${fmtMs(jobwire.latency.p99)} vs ${fmtMs(bull.latency.p99)})`,
      jobwire: fmtMs(jobwire.latency.p50),
      floor: `${fmtMs(bull.latency.p50)} BullMQ QueueEvents → SSE`,
      ratio: fmtRatio(jobwire.latency.p50 / bull.latency.p50),
      target: '≤ 1 ×',
      verdict: verdict(jobwire.latency.p50 <= bull.latency.p50 && jobwire.errors === 0),
    })
    ctx.rows.push({
      n: 12,
      metric: `same writes: send → a bare LISTEN client has the NOTIFY (PostgreSQL's own part of jobwire's path; p99 ${fmtMs(jobwire.rawListen.p99)})`,
      jobwire: fmtMs(jobwire.latency.p50),
      floor: `${fmtMs(jobwire.rawListen.p50)} raw LISTEN`,
      ratio: fmtRatio(jobwire.latency.p50 / jobwire.rawListen.p50),
      target: '— (for reading the row above)',
      verdict: 'info',
    })
    ctx.rows.push({
      n: 12,
      metric: `same, the writer with synchronous_commit=off (no WAL flush wait: the Redis peer's durability): p50 (p99 ${fmtMs(jobwireAsync.latency.p99)})`,
      jobwire: fmtMs(jobwireAsync.latency.p50),
      floor: `${fmtMs(bull.latency.p50)} BullMQ QueueEvents → SSE`,
      ratio: fmtRatio(jobwireAsync.latency.p50 / bull.latency.p50),
      target: '≤ 1 ×',
      verdict: verdict(jobwireAsync.latency.p50 <= bull.latency.p50 && jobwireAsync.errors === 0),
    })
    ctx.rows.push({
      n: 12,
      metric: `same: server CPU per 1,000 delivered events (${jobwire.delivered} vs ${bull.delivered} delivered)`,
      jobwire: `${fmtNum(jobwire.cpuMsPer1k)} ms`,
      floor: `${fmtNum(bull.cpuMsPer1k)} ms BullMQ peer`,
      ratio: fmtRatio(jobwire.cpuMsPer1k / bull.cpuMsPer1k),
      target: '< 1 ×',
      verdict: verdict(jobwire.cpuMsPer1k < bull.cpuMsPer1k && bull.errors === 0),
    })
  })
}
