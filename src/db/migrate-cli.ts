// `npm run migrate`: applies pending migrations to DATABASE_URL (or the embedded database
// when DATABASE_URL is unset, started for the duration of the run) and exits. It reads only
// the variables it uses (loadDatabaseConfig): a JWT key or any other service setting may be
// missing, as in the compose file's one-shot migration step.
import { loadDatabaseConfig } from '../config/index.js'
import { startEmbeddedPostgres } from '../dev/embedded-postgres.js'
import { ConfigError } from '../errors.js'
import { createLogger } from '../telemetry/logger.js'
import { runMigrations } from './migrate.js'

try {
  const config = loadDatabaseConfig()
  const logger = createLogger({ level: config.LOG_LEVEL, pretty: config.logPretty })
  const embedded = config.DATABASE_URL
    ? undefined
    : await startEmbeddedPostgres({
        dataDir: config.EMBEDDED_PG_DATA_DIR,
        port: config.EMBEDDED_PG_PORT,
        logger,
      })
  if (embedded) {
    // SIGTERM/SIGINT mid-run stop the embedded database on the way out (its package's own
    // exit hooks are removed, see embedded-postgres.ts); a migration in flight rolls back.
    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      process.once(signal, () => void embedded.stop().finally(() => process.exit(1)))
    }
  }
  try {
    const applied = await runMigrations(config.DATABASE_URL ?? embedded!.url, logger)
    process.stdout.write(
      applied.length ? `applied: ${applied.join(', ')}\n` : 'no pending migrations\n',
    )
  } finally {
    await embedded?.stop()
  }
} catch (error) {
  process.stderr.write(
    `jobwire migrate: ${error instanceof ConfigError || error instanceof Error ? error.message : String(error)}\n`,
  )
  process.exitCode = 1
}
