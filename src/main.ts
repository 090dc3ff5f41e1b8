// The process entry: load the configuration, then run the service in this process, or — with
// WEB_CONCURRENCY above 1 — as the primary of a cluster that runs it in worker processes
// (src/cluster/). Stops on SIGTERM/SIGINT. An invalid environment prints one line naming the
// variable and exits 1.
import cluster from 'node:cluster'
import { loadConfig, type Config } from './config/index.js'
import { ConfigError } from './errors.js'

let config: Readonly<Config>
try {
  config = loadConfig()
} catch (error) {
  if (error instanceof ConfigError) {
    process.stderr.write(`jobwire: ${error.message}\n`)
    process.exit(1)
  }
  throw error
}

const fail = (error: unknown): never => {
  process.stderr.write(
    `jobwire: start-up failed: ${error instanceof Error ? error.message : String(error)}\n`,
  )
  process.exit(1)
}

// Loaded once the environment is valid: a refused one (production without DATABASE_URL, say)
// is reported before any of the service's dependencies is loaded.
if (config.webConcurrency > 1 && cluster.isPrimary) {
  const { runPrimary } = await import('./cluster/primary.js')
  await runPrimary(config).catch(fail)
} else {
  const { startService } = await import('./service.js')
  const worker = cluster.isWorker ? await import('./cluster/worker.js') : undefined
  const service = await startService(config, worker?.clusterWorkerOptions(config)).catch(fail)
  worker?.reportListening(service.url)

  let signals = 0
  const stop = () => {
    if (++signals > 1) process.exit(1) // a second Ctrl-C does not wait
    const deadline = setTimeout(() => process.exit(1), config.SHUTDOWN_TIMEOUT_MS + 5000)
    deadline.unref()
    service.close().then(
      () => process.exit(0),
      (error: unknown) => {
        service.logger.error({ err: error }, 'shutdown failed')
        process.exit(1)
      },
    )
  }
  process.on('SIGTERM', stop)
  if (worker) {
    // A worker obeys its primary: the terminal's Ctrl-C reaches the primary too, which then
    // stops every worker with SIGTERM (one signal, so each drains). A primary that is gone
    // (its IPC channel closed) stops the worker as well.
    process.on('SIGINT', () => undefined)
    process.on('disconnect', stop)
  } else {
    process.on('SIGINT', stop)
  }
}
