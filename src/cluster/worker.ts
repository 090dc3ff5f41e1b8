// A cluster worker (WEB_CONCURRENCY > 1): a whole instance — its own listener, hub, pool and
// HTTP server on the port the workers share — whose request limits and stream caps are
// counted by the primary (src/cluster/primary.ts), and which tells the primary where it
// listens.
import cluster from 'node:cluster'
import { ClusterMemoryStoreWorker } from '@express-rate-limit/cluster-memory-store'
import type { Config } from '../config/index.js'
import type { RateLimitKind } from '../http/rate-limit.js'
import type { ServiceOptions } from '../service.js'
import { ClusterStreamSlots } from './stream-slots.js'

/** The environment variable the primary hands the database URL in (the embedded one's). */
export const WORKER_DATABASE_URL = 'JOBWIRE_CLUSTER_DATABASE_URL'

/** Messages a worker sends the primary. */
export interface WorkerReport {
  from: 'jobwire-cluster'
  listening: string
}

export function isClusterWorker(): boolean {
  return cluster.isWorker
}

export function clusterWorkerOptions(config: Readonly<Config>): ServiceOptions {
  const kinds: RateLimitKind[] = ['user', 'tenant', 'watch', 'ip']
  return {
    databaseUrl: process.env[WORKER_DATABASE_URL] ?? config.DATABASE_URL,
    isClusterWorker: true,
    stores: {
      rateLimits: Object.fromEntries(
        kinds.map((kind) => [kind, new ClusterMemoryStoreWorker({ prefix: `jobwire-${kind}` })]),
      ),
      streamSlots: new ClusterStreamSlots(config),
    },
  }
}

export function reportListening(url: string): void {
  const report: WorkerReport = { from: 'jobwire-cluster', listening: url }
  process.send?.(report)
}
