// The process entry: load the configuration, start the service, stop it on SIGTERM/SIGINT.
// An invalid environment prints one line naming the variable and exits 1.
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

// Loaded once the environment is valid: a refused one (production without DATABASE_URL, say)
// is reported before any of the service's dependencies is loaded.
const { startService } = await import('./service.js')
const service = await startService(config).catch((error: unknown) => {
  process.stderr.write(
    `jobwire: start-up failed: ${error instanceof Error ? error.message : String(error)}\n`,
  )
  process.exit(1)
})

let signals = 0
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
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
  })
}
