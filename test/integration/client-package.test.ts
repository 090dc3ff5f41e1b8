// `npm run pack:client` makes a tarball that a frontend project installs like any package:
// the test packs it, installs it into an empty project with `npm install <tarball> --offline`
// (it has no dependencies, so nothing is fetched), imports `jobwire/client` from Node and
// type-checks an import of it under both TypeScript resolutions a frontend uses.
import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { PROJECT_ROOT } from '../../src/project-root.js'

const run = promisify(execFile)
let dir: string
let project: string
let tarball: string

// npm passes its settings to scripts as npm_* variables; the nested npm must not inherit them.
const env = Object.fromEntries(
  Object.entries(process.env).filter(([name]) => !/^npm_/i.test(name)),
) as NodeJS.ProcessEnv

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'jobwire-client-package-'))
  const packed = await run(
    process.execPath,
    [join(PROJECT_ROOT, 'scripts', 'pack-client.mjs'), '--out', dir],
    { cwd: PROJECT_ROOT, env },
  )
  tarball = packed.stdout.trim().split('\n').at(-1)!
  project = join(dir, 'frontend')
  await mkdir(project)
  await writeFile(
    join(project, 'package.json'),
    JSON.stringify({ name: 'frontend', private: true, type: 'module' }),
  )
  await run(
    'npm',
    ['install', tarball, '--offline', '--no-audit', '--no-fund', '--ignore-scripts'],
    { cwd: project, env },
  )
}, 120_000)
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true })
})

it('is the client alone: named jobwire, the same version, no dependencies', async () => {
  expect(tarball).toBe(join(dir, `jobwire-client-${await version()}.tgz`))
  const installed = JSON.parse(
    await readFile(join(project, 'node_modules', 'jobwire', 'package.json'), 'utf8'),
  ) as Record<string, unknown>
  expect(installed).toMatchObject({ name: 'jobwire', version: await version(), type: 'module' })
  expect(installed.dependencies).toBeUndefined()
  expect(installed.exports).toHaveProperty(['./client'])
  const lock = JSON.parse(await readFile(join(project, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, unknown>
  }
  // The project and jobwire: nothing else was installed.
  expect(Object.keys(lock.packages).sort()).toEqual(['', 'node_modules/jobwire'])
})

it('imports as `jobwire/client` from Node, and works', async () => {
  const script = `
    import * as client from 'jobwire/client'
    const doc = client.applyPatch({ a: [1] }, [{ op: 'copy', from: '/a', path: '/b' }])
    console.log(JSON.stringify({
      exports: Object.keys(client).sort(),
      doc,
      label: client.statusLabel({ status: 'running', attempts: 1 }),
    }))`
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], {
    cwd: project,
    env,
  })
  const out = JSON.parse(stdout) as { exports: string[]; doc: unknown; label: string }
  expect(out.exports).toEqual(
    expect.arrayContaining(['applyPatch', 'createClient', 'statusLabel', 'watch', 'watchMany']),
  )
  expect(out.doc).toEqual({ a: [1], b: [1] })
  expect(out.label).toBe('Running')
})

it.each([
  ['NodeNext', ['--module', 'nodenext', '--moduleResolution', 'nodenext']],
  ['a bundler', ['--module', 'esnext', '--moduleResolution', 'bundler']],
])('has types that resolve for %s', async (_name, resolution) => {
  await writeFile(
    join(project, 'app.ts'),
    `import { watch, applyPatch, type JobDocument, type ConnectionState } from 'jobwire/client'
     const job = watch('00000000-0000-4000-8000-000000000001', { baseUrl: 'http://localhost:3000' })
     const doc: JobDocument | undefined = job.current
     const state: ConnectionState = job.state
     const patched: { a: number } = applyPatch({ a: 1 }, [{ op: 'replace', path: '/a', value: 2 }])
     export { doc, state, patched }
    `,
  )
  const tsc = join(PROJECT_ROOT, 'node_modules', 'typescript', 'bin', 'tsc')
  const args = ['--noEmit', '--strict', '--target', 'es2022', '--lib', 'es2023,dom']
  const result = await run(process.execPath, [tsc, ...args, ...resolution, 'app.ts'], {
    cwd: project,
    env,
  }).catch((error: { stdout?: string }) => ({ stdout: error.stdout ?? String(error) }))
  expect(result.stdout).toBe('')
})

async function version(): Promise<string> {
  const root = JSON.parse(await readFile(join(PROJECT_ROOT, 'package.json'), 'utf8')) as {
    version: string
  }
  return root.version
}
