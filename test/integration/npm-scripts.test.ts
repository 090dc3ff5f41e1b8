// The npm scripts as a process manager, `timeout` or CI meets them: they signal the pid they
// started, which is npm's. `npm start` and `npm run worker` must then stop completely within
// the shutdown bound — the HTTP port closed, the embedded PostgreSQL gone, no process left
// behind — on SIGTERM and on SIGINT. And the development state can be found and reset: the
// start-up banner says where the data and the key are, and `npm run reset` deletes exactly
// those, refusing while the service runs.
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { PROJECT_ROOT } from '../../src/project-root.js'
import { createTestDatabase } from '../helpers/database.js'
import { commandLine, descendants, isAlive } from '../helpers/processes.js'

const SHUTDOWN_TIMEOUT_MS = 2000
// src/main.ts and src/worker/cli.ts exit at the latest SHUTDOWN_TIMEOUT_MS + 5 s after the
// signal; npm needs a moment more to notice and exit itself.
const SHUTDOWN_BOUND_MS = SHUTDOWN_TIMEOUT_MS + 5000 + 2000
const READY_DEADLINE_MS = 90_000
const PACKAGE = JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')) as {
  scripts: Record<string, string>
}

interface Run {
  child: ChildProcess
  pid: number
  stdout: () => string
  stderr: () => string
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

const started: Run[] = []
const leftovers = new Set<number>()
const tempDirs: string[] = []

afterAll(async () => {
  // Whatever a failed test left running: the processes this file started, gently, then
  // firmly. npm first, then what it started (npm alone may leave them, as it used to).
  const runs = started.map((run) => run.pid).filter(isAlive)
  for (const pid of runs) for (const below of descendants(pid)) leftovers.add(below)
  const pids = [...runs, ...leftovers].filter(isAlive)
  for (const pid of pids) process.kill(pid, 'SIGTERM')
  for (let i = 0; i < 100 && pids.some(isAlive); i++) await new Promise((r) => setTimeout(r, 100))
  for (const pid of pids.filter(isAlive)) process.kill(pid, 'SIGKILL')
  for (const dir of tempDirs) await rm(dir, { recursive: true, force: true })
}, 30_000)

/** `npm <args>` in the project, with only the given environment (plus PATH and HOME). */
function npm(args: string[], env: Record<string, string>): Run {
  const child = spawn('npm', args, {
    cwd: PROJECT_ROOT,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  let err = ''
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (out += chunk))
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (err += chunk))
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  )
  const run = { child, pid: child.pid!, stdout: () => out, stderr: () => err, exited }
  started.push(run)
  return run
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}

function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms)
    }),
  ])
}

/** Polls `check` until it holds; fails early when the run exits, or at the deadline. */
async function waitFor(run: Run, what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + READY_DEADLINE_MS
  let exited = false
  void run.exited.then(() => (exited = true))
  while (Date.now() < deadline) {
    if (exited) throw new Error(`exited before ${what}:\n${run.stderr()}\n${run.stdout()}`)
    if (await check()) return
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  throw new Error(`not ${what} within ${READY_DEADLINE_MS} ms:\n${run.stderr()}`)
}

const answers = (url: string) =>
  fetch(url).then(
    (res) => res.status === 200,
    () => false,
  )

/**
 * Signals npm's pid alone and waits, within the shutdown bound, for npm to exit and for
 * every process it had started to be gone. Returns npm's exit.
 */
async function signalAndWait(run: Run, signal: NodeJS.Signals) {
  const below = descendants(run.pid)
  expect(below.length).toBeGreaterThan(0)
  for (const pid of below) leftovers.add(pid)
  process.kill(run.pid, signal)
  const exit = await withDeadline(run.exited, SHUTDOWN_BOUND_MS, `npm did not exit on ${signal}`)
  // The children are gone too (before the fix npm exited at once and left them running).
  const deadline = Date.now() + 1000
  while (below.some(isAlive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
  expect(below.filter(isAlive).map(commandLine)).toEqual([])
  return exit
}

async function startEnv(dataDir: string) {
  return {
    NODE_ENV: 'development',
    PORT: String(await freePort()),
    EMBEDDED_PG_PORT: String(await freePort()),
    EMBEDDED_PG_DATA_DIR: dataDir,
    SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS),
    LOG_LEVEL: 'warn',
  }
}

it('starts the long-running scripts as the process npm signals (exec, no shell in between)', () => {
  for (const name of ['start', 'dev', 'serve', 'migrate', 'worker']) {
    expect([name, PACKAGE.scripts[name]]).toEqual([name, expect.stringMatching(/^exec /)])
  }
})

describe('npm start', () => {
  it('says where its data is, stops on SIGTERM to npm, and npm run reset deletes that data', async () => {
    // A private folder (mktemp -d is 0700): as root the data cannot stay in it.
    const dir = await mkdtemp(join(tmpdir(), 'jobwire-npm-start-'))
    tempDirs.push(dir)
    const env = await startEnv(join(dir, 'postgres'))
    const baseUrl = `http://127.0.0.1:${env.PORT}`

    const run = npm(['start'], env)
    await waitFor(run, 'ready', () => answers(`${baseUrl}/readyz`))
    const dataDir = /^Data \(embedded PostgreSQL\): (.+)$/m.exec(run.stdout())?.[1]
    const keyFile = /^Development key: (.+)$/m.exec(run.stdout())?.[1]
    expect(run.stdout()).toMatch(/npm run reset/)
    if (process.getuid?.() === 0) {
      // PostgreSQL runs as `postgres`, which cannot enter `dir`: the data went elsewhere.
      expect(dataDir).toMatch(/\/jobwire-[0-9a-f]{12}\/postgres$/)
      tempDirs.push(join(dataDir!, '..'))
    } else {
      expect(dataDir).toBe(join(dir, 'postgres'))
    }
    expect(existsSync(join(dataDir!, 'PG_VERSION'))).toBe(true)
    expect(keyFile).toBe(join(dir, 'dev-secrets.json'))
    expect(existsSync(keyFile!)).toBe(true)
    const postmaster = Number(readFileSync(join(dataDir!, 'postmaster.pid'), 'utf8').split('\n')[0])
    expect(isAlive(postmaster)).toBe(true)

    // Reset refuses while PostgreSQL runs from that folder, and deletes nothing.
    const refused = npm(['run', '--silent', 'reset'], env)
    expect((await withDeadline(refused.exited, 30_000, 'reset did not exit')).code).toBe(1)
    expect(refused.stderr()).toContain(`PostgreSQL (pid ${postmaster}) is running from ${dataDir}`)
    expect(existsSync(join(dataDir!, 'PG_VERSION'))).toBe(true)

    expect(await signalAndWait(run, 'SIGTERM')).toEqual({ code: 0, signal: null })
    expect(await answers(`${baseUrl}/healthz`)).toBe(false)
    expect(isAlive(postmaster)).toBe(false)

    const reset = npm(['run', '--silent', 'reset'], env)
    expect((await withDeadline(reset.exited, 30_000, 'reset did not exit')).code).toBe(0)
    expect(reset.stdout()).toBe(
      `removed ${dataDir} (embedded PostgreSQL data)\nremoved ${keyFile} (development key)\n`,
    )
    expect(existsSync(dataDir!)).toBe(false)
    expect(existsSync(keyFile!)).toBe(false)
  }, 240_000)

  it('stops on SIGINT to npm: the port closes and the embedded PostgreSQL stops', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'jobwire-npm-start-'))
    tempDirs.push(dir)
    await chmod(dir, 0o755) // the postgres user (as root) may enter: the data stays here
    const env = await startEnv(join(dir, 'postgres'))
    const baseUrl = `http://127.0.0.1:${env.PORT}`

    const run = npm(['start'], env)
    await waitFor(run, 'ready', () => answers(`${baseUrl}/readyz`))
    const postmaster = Number(
      readFileSync(join(dir, 'postgres', 'postmaster.pid'), 'utf8').split('\n')[0],
    )
    expect(await signalAndWait(run, 'SIGINT')).toEqual({ code: 0, signal: null })
    expect(await answers(`${baseUrl}/healthz`)).toBe(false)
    expect(isAlive(postmaster)).toBe(false)
  }, 240_000)
})

describe('npm run reset', () => {
  it('refuses a data folder that is not PostgreSQL’s, and deletes nothing', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'jobwire-npm-reset-'))
    tempDirs.push(dir)
    await chmod(dir, 0o755)
    const notData = join(dir, 'documents')
    await mkdir(notData)
    await writeFile(join(notData, 'keep.txt'), 'mine\n')
    const run = npm(['run', '--silent', 'reset'], { EMBEDDED_PG_DATA_DIR: notData })
    expect((await withDeadline(run.exited, 30_000, 'reset did not exit')).code).toBe(1)
    expect(run.stderr()).toContain(`${notData} is not a PostgreSQL data folder`)
    expect(readFileSync(join(notData, 'keep.txt'), 'utf8')).toBe('mine\n')
  }, 60_000)

  it('says so when there is nothing to delete', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'jobwire-npm-reset-'))
    tempDirs.push(dir)
    await chmod(dir, 0o755)
    const run = npm(['run', '--silent', 'reset'], { EMBEDDED_PG_DATA_DIR: join(dir, 'pg') })
    expect((await withDeadline(run.exited, 30_000, 'reset did not exit')).code).toBe(0)
    expect(run.stdout()).toMatch(/^nothing to remove: /)
  }, 60_000)
})

describe('npm run worker', () => {
  it.each(['SIGTERM', 'SIGINT'] as const)(
    'stops on %s to npm and leaves no connection behind',
    async (signal) => {
      const database = await createTestDatabase()
      const admin = new pg.Client({ connectionString: database.url })
      await admin.connect()
      const workerConnections = async () =>
        (
          await admin.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = 'jobwire-worker'`,
          )
        ).rows[0]!.n
      try {
        const run = npm(['run', 'worker'], {
          NODE_ENV: 'development',
          DATABASE_URL: database.url,
          SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS),
          LOG_LEVEL: 'warn',
        })
        await waitFor(run, 'polling for jobs', async () => (await workerConnections()) > 0)
        expect(await signalAndWait(run, signal)).toEqual({ code: 0, signal: null })
        // The process is gone; its backends end as soon as PostgreSQL sees the sockets close.
        for (let i = 0; i < 40 && (await workerConnections()) > 0; i++) {
          await new Promise((resolve) => setTimeout(resolve, 50))
        }
        expect(await workerConnections()).toBe(0)
      } finally {
        await admin.end()
        await database.drop()
      }
    },
    120_000,
  )
})
