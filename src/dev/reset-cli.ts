// `npm run reset`: deletes the development state so that the next `npm start` begins afresh —
// the embedded PostgreSQL's data folder (the one really used: as root it may sit under the
// system temp folder, see embedded-postgres.ts) and the generated development key beside
// EMBEDDED_PG_DATA_DIR. It refuses while a PostgreSQL runs from that folder, and refuses to
// delete a folder that is not a PostgreSQL data folder. DATABASE_URL's database is never
// touched. Exit codes: 0 done (or nothing to delete), 1 refused.
import { existsSync, readdirSync, readFileSync, rmSync, rmdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { loadDatabaseConfig } from '../config/index.js'
import { devSecretsFile } from './dev-token.js'
import { embeddedDataDir } from './embedded-postgres.js'

function fail(message: string): never {
  process.stderr.write(`jobwire reset: ${message}\n`)
  process.exit(1)
}

let config: ReturnType<typeof loadDatabaseConfig>
try {
  config = loadDatabaseConfig()
} catch (error) {
  fail(error instanceof Error ? error.message : String(error))
}

const { dataDir, blockedBy } = embeddedDataDir(config.EMBEDDED_PG_DATA_DIR)
const secretsFile = devSecretsFile(config.EMBEDDED_PG_DATA_DIR)

if (existsSync(dataDir)) {
  const running = runningPostmaster(dataDir)
  if (running !== undefined) {
    fail(`PostgreSQL (pid ${running}) is running from ${dataDir}: stop jobwire (npm start) first`)
  }
  if (!existsSync(join(dataDir, 'PG_VERSION')) && readdirSync(dataDir).length > 0) {
    fail(`${dataDir} is not a PostgreSQL data folder (no PG_VERSION): not deleting it`)
  }
}

const removed: string[] = []
if (existsSync(dataDir)) {
  rmSync(dataDir, { recursive: true, force: true })
  removed.push(`${dataDir} (embedded PostgreSQL data)`)
  // The stand-in folder under the system temp folder holds nothing else.
  if (blockedBy) removeIfEmpty(dirname(dataDir))
}
if (existsSync(secretsFile)) {
  rmSync(secretsFile, { force: true })
  removed.push(`${secretsFile} (development key)`)
}
process.stdout.write(
  removed.length
    ? removed.map((line) => `removed ${line}\n`).join('')
    : `nothing to remove: no data in ${dataDir}, no key at ${secretsFile}\n`,
)
if (config.DATABASE_URL) {
  process.stdout.write('DATABASE_URL is set: that database was not touched\n')
}

/** The pid in the folder's postmaster.pid when that process is alive (and, on Linux, a postgres). */
function runningPostmaster(dir: string): number | undefined {
  const file = join(dir, 'postmaster.pid')
  if (!existsSync(file)) return undefined
  const pid = Number(readFileSync(file, 'utf8').split('\n')[0])
  if (!Number.isInteger(pid) || pid <= 0) return undefined
  try {
    process.kill(pid, 0)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return undefined // stale file
  }
  // A stale file whose pid now belongs to another program does not block the reset.
  const cmdline = `/proc/${pid}/cmdline`
  if (existsSync(cmdline) && !readFileSync(cmdline, 'utf8').includes('postgres')) return undefined
  return pid
}

function removeIfEmpty(dir: string): void {
  try {
    if (readdirSync(dir).length === 0) rmdirSync(dir)
  } catch {
    // Already gone, or not ours to judge.
  }
}
