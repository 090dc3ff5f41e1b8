// jobwire in cluster mode (WEB_CONCURRENCY workers, docs/production.md "All cores") as a bench
// child: this process is the primary, exactly as src/main.ts runs it, and each worker runs
// src/main.ts. Ready once every worker listens; the bench then talks to the shared port.
// There is no per-process hub to read here: scenarios on the cluster rely on what their
// clients see.
import cluster from 'node:cluster'
import { resolve } from 'node:path'
import { loadConfig } from '../../src/config/index.js'
import { runPrimary } from '../../src/cluster/primary.js'
import type { WorkerReport } from '../../src/cluster/worker.js'
import { BENCH_DIR, serve } from '../lib/child.js'

const config = loadConfig(process.env)
if (config.webConcurrency < 2) throw new Error('jobwire-cluster needs WEB_CONCURRENCY ≥ 2')
// The workers run the service entry, not this file (the bench's own flags carry over).
cluster.setupPrimary({
  exec: resolve(BENCH_DIR, '../src/main.ts'),
  execArgv: process.execArgv,
})

const listening = new Promise<string>((resolveUrl) => {
  const seen = new Set<number>()
  cluster.on('message', (worker, message: Partial<WorkerReport> | undefined) => {
    if (message?.from !== 'jobwire-cluster' || typeof message.listening !== 'string') return
    seen.add(worker.id)
    if (seen.size === config.webConcurrency) resolveUrl(message.listening)
  })
})
const primary = await runPrimary(config, { handleSignals: false })
const url = await listening
const workerPids = () =>
  Object.values(cluster.workers ?? {}).flatMap((w) => (w?.process.pid ? [w.process.pid] : []))

serve({ workers: () => workerPids() }, { url, pid: process.pid, workerPids: workerPids() }, () =>
  primary.stop(),
)
