// Scenario 3, WebSocket line: server RSS above empty per idle WebSocket connection (10,000 in 4
// client processes, after a forced GC), jobwire's /v1/ws with one job subscribed per socket,
// against the ws package on bare node:http (bench/floors/bare-ws-server.ts) in the same run.
import { sleep, type BenchChild } from '../lib/child.js'
import type { Context, Scope, ServerInfo } from '../lib/context.js'
import { seedJobs } from '../lib/database.js'
import { round } from '../lib/stats.js'
import { fmtNum, fmtRatio, verdict } from '../lib/table.js'
import { CLIENT_PROCESSES } from './fanout.js'

async function openAll(
  clients: BenchChild[],
  args: { url: string; token: string; hello?: unknown },
  n: number,
): Promise<void> {
  const per = Math.ceil(n / clients.length)
  const results = await Promise.all(
    clients.map((c, i) =>
      c.call<{ opened: number; failureSamples: string[] }>(
        'open',
        {
          ...args,
          count: Math.max(0, Math.min(per, n - i * per)),
          concurrency: 64,
          timeoutMs: 20_000,
        },
        180_000,
      ),
    ),
  )
  const opened = results.reduce((a, r) => a + r.opened, 0)
  if (opened < n)
    throw new Error(
      `${opened}/${n} WebSockets opened: ${results.flatMap((r) => r.failureSamples).join('; ')}`,
    )
}

/** Opens n idle sockets on `server` and returns its RSS growth per socket (KiB), after GC. */
async function rssPerSocket(
  server: BenchChild<ServerInfo>,
  clients: BenchChild[],
  args: { url: string; token: string; hello?: unknown },
  n: number,
): Promise<number> {
  await sleep(500)
  await server.call('gc')
  const empty = server.rssKiB()
  await openAll(clients, args, n)
  await sleep(500)
  await server.call('gc')
  const full = server.rssKiB()
  await Promise.all(clients.map((c) => c.call('closeAll')))
  return (full - empty) / n
}

export async function wsMemoryScenario(ctx: Context): Promise<void> {
  const n = ctx.n(10_000, 10)
  const start = (scope: Scope) =>
    scope.startMany('clients/ws-clients.ts', CLIENT_PROCESSES, { name: 'ws-clients' })
  const floorKiB = await ctx.scoped(async (scope) => {
    const [server, clients] = await Promise.all([
      scope.start<ServerInfo>('floors/bare-ws-server.ts', {
        name: 'bare-ws-server',
        nodeArgs: ['--expose-gc'],
      }),
      start(scope),
    ])
    return rssPerSocket(server, clients, { url: server.info.url, token: '' }, n)
  })
  const jobwireKiB = await ctx.scoped(async (scope) => {
    const [job] = await seedJobs(ctx.db, ctx.tenantId, 1)
    const [server, clients] = await Promise.all([ctx.startServer(scope), start(scope)])
    const url = `${server.info.url.replace(/^http/, 'ws')}/v1/ws`
    return rssPerSocket(
      server,
      clients,
      { url, token: ctx.token, hello: { op: 'subscribe', jobs: [job] } },
      n,
    )
  })
  ctx.raw.wsMemory = { sockets: n, jobwireKiB, floorKiB }
  const ratio = jobwireKiB / floorKiB
  ctx.rows.push({
    n: 3,
    metric: `RSS per idle WebSocket, one job subscribed (${n.toLocaleString('en-US')}, after GC)`,
    jobwire: `${fmtNum(round(jobwireKiB * 1.024, 1))} KB`,
    floor: `${fmtNum(round(floorKiB * 1.024, 1))} KB ws on node:http`,
    ratio: fmtRatio(ratio),
    target: '≤ 1.5 ×',
    verdict: verdict(ratio <= 1.5),
  })
}
