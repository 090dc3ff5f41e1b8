// jobwire itself, as the bench's server child: startService(loadConfig(env)) exactly as
// src/main.ts does, plus an IPC channel so the bench can read the hub's counters and force a
// garbage collection before it reads the RSS (the process runs with --expose-gc).
// It also counts every query the process sends (pg.Client#query, pool and listener alike): an
// exact, lag-free figure beside pg_stat_database, whose counters PostgreSQL flushes late.
import { writeHeapSnapshot } from 'node:v8'
import { loadConfig } from '../../src/config/index.js'
import { startService } from '../../src/service.js'
import { serve } from '../lib/child.js'
import { countQueries } from '../lib/query-counter.js'

const queries = countQueries()

const service = await startService(loadConfig(process.env))

export interface ServerStats {
  watchers: number
  watchedJobs: number
  streams: number
  notifications: number
  fetches: number
  fetchedRows: number
  changes: number
  /** Queries sent by this process so far: all, and those on the listener connection. */
  queries: number
  listenerQueries: number
  memory: NodeJS.MemoryUsage
}

serve(
  {
    stats: (): ServerStats => ({
      watchers: service.hub.watcherCount,
      watchedJobs: service.hub.watchedJobs,
      streams: service.registry.size,
      notifications: service.hub.stats.notifications,
      fetches: service.hub.stats.fetches,
      fetchedRows: service.hub.stats.fetchedRows,
      changes: service.hub.stats.changes,
      queries: queries.total,
      listenerQueries: queries.listener,
      memory: process.memoryUsage(),
    }),
    /** Writes a V8 heap snapshot (for finding what each connection keeps alive). */
    heapSnapshot: (args: { path: string }) => writeHeapSnapshot(args.path),
    gc: () => {
      const gc = (globalThis as { gc?: () => void }).gc
      gc?.()
      gc?.()
      return { collected: gc !== undefined, memory: process.memoryUsage() }
    },
  },
  { url: service.url, pid: process.pid },
  () => service.close(),
)
