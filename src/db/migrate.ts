// Runs the SQL migrations in migrations/ (node-pg-migrate). Safe to run from several
// instances at once: node-pg-migrate holds an advisory lock while it migrates, and a second
// instance waits for it (advisoryLockMode 'wait') instead of failing, then finds nothing
// left to apply. The wait is bounded by lock_timeout on the migration's own connection
// (MIGRATION_LOCK_TIMEOUT_MS): a start-up never hangs behind a stuck migration.
import { runner } from 'node-pg-migrate'
import { MIGRATIONS_DIR } from '../project-root.js'
import type { Logger } from '../telemetry/logger.js'

/** How long a migration waits for a lock (the other instance's, or a table's) before failing. */
export const MIGRATION_LOCK_TIMEOUT_MS = 120_000

export async function runMigrations(
  databaseUrl: string,
  logger?: Logger,
  lockTimeoutMs = MIGRATION_LOCK_TIMEOUT_MS,
): Promise<string[]> {
  const applied = await runner({
    databaseUrl: { connectionString: databaseUrl, options: `-c lock_timeout=${lockTimeoutMs}` },
    dir: MIGRATIONS_DIR,
    direction: 'up',
    migrationsTable: 'pgmigrations',
    count: Infinity,
    checkOrder: true,
    singleTransaction: true,
    advisoryLockMode: 'wait',
    verbose: false,
    log: () => undefined,
  })
  const names = applied.map((m) => m.name)
  if (names.length > 0) logger?.info({ migrations: names }, 'applied migrations')
  return names
}
