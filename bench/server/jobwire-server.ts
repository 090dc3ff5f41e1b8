// jobwire itself, as the bench's server child: startService(loadConfig(env)) exactly as
// src/main.ts does, plus an IPC channel so the bench can read the hub's counters and force a
// garbage collection before it reads the RSS (the process runs with --expose-gc).
import { loadConfig } from '../../src/config/index.js'
import { startService } from '../../src/service.js'
import { serve } from '../lib/child.js'

const service = await startService(loadConfig(process.env))

export interface ServerStats {
  watchers: number
  watchedJobs: number
  streams: number
  notifications: number
  fetches: number
  fetchedRows: number
  changes: number
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
      memory: process.memoryUsage(),
    }),
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
