// Runs the SQL migrations in migrations/ (node-pg-migrate). Safe to run from several
// instances at once: node-pg-migrate holds an advisory lock while it migrates.
import { runner } from 'node-pg-migrate'
import { MIGRATIONS_DIR } from '../project-root.js'
import type { Logger } from '../telemetry/logger.js'

export async function runMigrations(databaseUrl: string, logger?: Logger): Promise<string[]> {
  const applied = await runner({
    databaseUrl,
    dir: MIGRATIONS_DIR,
    direction: 'up',
    migrationsTable: 'pgmigrations',
    count: Infinity,
    checkOrder: true,
    singleTransaction: true,
    verbose: false,
    log: () => undefined,
  })
  const names = applied.map((m) => m.name)
  if (names.length > 0) logger?.info({ migrations: names }, 'applied migrations')
  return names
}
