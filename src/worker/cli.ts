// `npm run worker`: a standalone worker process running the demo handlers (src/dev/demo-worker.ts)
// against DATABASE_URL. Like src/main.ts it is an entry point, the only place in src/worker/
// that imports config/ and dev/. SIGTERM/SIGINT stop it gracefully within SHUTDOWN_TIMEOUT_MS:
// running jobs finish or are released; a second signal exits at once.
// Settings: WORKER_CONCURRENCY, LEASE_SECONDS, LEASE_REAPER_INTERVAL_MS, LOG_LEVEL.
import { loadConfig } from '../config/index.js'
import { startDemoWorker } from '../dev/demo-worker.js'
import { ConfigError } from '../errors.js'
import { createLogger } from '../telemetry/logger.js'

let config: ReturnType<typeof loadConfig>
try {
  config = loadConfig()
} catch (error) {
  if (error instanceof ConfigError) {
    process.stderr.write(`jobwire worker: ${error.message}\n`)
    process.exit(1)
  }
  throw error
}

if (!config.DATABASE_URL) {
  // The embedded database belongs to the `npm start` process; point at it explicitly.
  process.stderr.write(
    'jobwire worker: DATABASE_URL is required. Against `npm start`’s embedded database: ' +
      `DATABASE_URL=postgres://postgres:jobwire-embedded@127.0.0.1:${config.EMBEDDED_PG_PORT}/jobwire npm run worker\n`,
  )
  process.exit(1)
}

const logger = createLogger({ level: config.LOG_LEVEL, pretty: config.logPretty }).child({
  component: 'worker',
})
const worker = startDemoWorker({
  connectionString: config.DATABASE_URL,
  statementTimeoutMs: config.DB_STATEMENT_TIMEOUT_MS,
  logger,
  concurrency: config.WORKER_CONCURRENCY,
  leaseSeconds: config.LEASE_SECONDS,
  reapIntervalMs: config.LEASE_REAPER_INTERVAL_MS,
})

let signals = 0
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    if (++signals > 1) process.exit(1)
    const deadline = setTimeout(() => process.exit(1), config.SHUTDOWN_TIMEOUT_MS + 5000)
    deadline.unref()
    worker.stop({ graceMs: config.SHUTDOWN_TIMEOUT_MS }).then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, 'worker stop failed')
        process.exit(1)
      },
    )
  })
}
