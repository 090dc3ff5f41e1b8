// `npm run check:deps` (part of `npm test`): the lockfile must fit the project's promises.
//   1. Every locked package's `engines.node` accepts the oldest Node that package.json's
//      `engines.node` allows (else every install on that Node warns EBADENGINE, and the
//      package may not run there).
//   2. Every locked package with an install script has an entry in package.json
//      `allowScripts`, true (reviewed, runs) or false (reviewed, skipped): npm 11 skips an
//      unreviewed script with a warning, which hides whether the package still works.
// Reads package.json and package-lock.json only: no network, no node_modules walk.
// `.ci/run` also installs with --engine-strict --strict-allow-scripts, npm's own verdict.
import { readFileSync } from 'node:fs'
import semver from 'semver'

const root = new URL('../', import.meta.url)
const manifest = JSON.parse(readFileSync(new URL('package.json', root), 'utf8'))
const lock = JSON.parse(readFileSync(new URL('package-lock.json', root), 'utf8'))

const supported = manifest.engines?.node
const oldest = supported && semver.minVersion(supported)
if (!oldest) fail([`package.json has no usable engines.node (${String(supported)})`])

const allow = Object.entries(manifest.allowScripts ?? {}).map(([key, value]) => {
  // "name", or "name@range" (a pinned approval); scoped names start with @.
  const at = key.indexOf('@', 1)
  return at === -1
    ? { name: key, range: '*', value }
    : { name: key.slice(0, at), range: key.slice(at + 1), value }
})

const problems = []
for (const [path, entry] of Object.entries(lock.packages ?? {})) {
  if (path === '') continue
  const name = entry.name ?? path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length)
  const id = `${name}@${entry.version}`
  const wants = typeof entry.engines === 'object' && !Array.isArray(entry.engines)
  const range = wants ? entry.engines.node : undefined
  if (range && !semver.satisfies(oldest, range, { includePrerelease: true })) {
    problems.push(
      `EBADENGINE ${id} wants node ${range}; engines.node "${supported}" allows ${oldest.version}`,
    )
  }
  if (entry.hasInstallScript) {
    const reviewed = allow.some(
      (a) =>
        a.name === name && semver.satisfies(entry.version, a.range, { includePrerelease: true }),
    )
    if (!reviewed) {
      problems.push(
        `install script of ${id} is not reviewed: add "${name}": true or false to allowScripts`,
      )
    }
  }
}
if (problems.length) fail(problems)
process.stdout.write(
  `check:deps: ${Object.keys(lock.packages).length - 1} locked packages fit node ${supported}; every install script is reviewed\n`,
)

function fail(lines) {
  process.stderr.write(lines.map((line) => `check:deps: ${line}\n`).join(''))
  process.exit(1)
}
