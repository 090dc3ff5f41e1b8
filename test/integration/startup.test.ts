// `npm start` as a new user runs it: no DATABASE_URL, so the service boots an embedded
// PostgreSQL in a data folder, migrates it, prints a token, serves the API, stops cleanly on
// SIGTERM and reuses the data on the next start. Also: an invalid environment stops start-up.
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { chmod, mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PROJECT_ROOT } from '../../src/project-root.js'
import { createTestDatabase } from '../helpers/database.js'

const READY_DEADLINE_MS = 90_000
const EXIT_DEADLINE_MS = 30_000

interface Started {
  child: ChildProcess
  stdout: () => string
  stderr: () => string
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

const children: ChildProcess[] = []
const tempDirs: string[] = []

afterAll(async () => {
  for (const child of children) {
    if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) continue
    // SIGTERM first: the service stops its embedded PostgreSQL on the way out.
    const gone = new Promise((resolve) => child.once('exit', resolve))
    process.kill(child.pid, 'SIGTERM')
    const timer = setTimeout(() => child.pid && process.kill(child.pid, 'SIGKILL'), 20_000)
    await gone
    clearTimeout(timer)
  }
  for (const dir of tempDirs) await rm(dir, { recursive: true, force: true })
}, 60_000)

/** Spawns `node --import tsx src/main.ts` with only the given environment (plus PATH, HOME). */
function startMain(env: Record<string, string>): Started {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: PROJECT_ROOT,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  children.push(child)
  let out = ''
  let err = ''
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (out += chunk))
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (err += chunk))
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  )
  return { child, stdout: () => out, stderr: () => err, exited }
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

/** Polls /readyz until it answers 200; fails early if the process exits. */
async function waitUntilReady(started: Started, baseUrl: string): Promise<void> {
  const deadline = Date.now() + READY_DEADLINE_MS
  let exited = false
  void started.exited.then(() => (exited = true))
  while (Date.now() < deadline) {
    if (exited) {
      throw new Error(
        `jobwire exited before it was ready:\n${started.stderr()}\n${started.stdout()}`,
      )
    }
    const status = await fetch(`${baseUrl}/readyz`).then(
      (res) => res.status,
      () => 0,
    )
    if (status === 200) return
    await new Promise((resolve) => setTimeout(resolve, 250))
  }
  throw new Error(`/readyz did not answer 200 within ${READY_DEADLINE_MS} ms:\n${started.stderr()}`)
}

async function stop(started: Started): Promise<number | null> {
  started.child.kill('SIGTERM')
  const { code } = await withDeadline(started.exited, EXIT_DEADLINE_MS, 'jobwire did not exit')
  return code
}

describe('npm start without DATABASE_URL', () => {
  it('boots an embedded PostgreSQL, prints a working token, stops on SIGTERM and reuses its data', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'jobwire-startup-'))
    tempDirs.push(dir)
    // Run as root, PostgreSQL runs as the `postgres` user, which must be able to enter here.
    await chmod(dir, 0o755)
    const env = {
      NODE_ENV: 'development',
      EMBEDDED_PG_DATA_DIR: join(dir, 'postgres'),
      EMBEDDED_PG_PORT: String(await freePort()),
      PORT: String(await freePort()),
      LOG_LEVEL: 'warn',
    }
    const baseUrl = `http://127.0.0.1:${env.PORT}`

    const first = startMain(env)
    await waitUntilReady(first, baseUrl)
    const token = /export TOKEN=(\S+)/.exec(first.stdout())?.[1]
    expect(token).toBeDefined()
    expect(first.stdout()).toContain(`curl -s ${baseUrl}/v1/jobs`)

    const auth = { authorization: `Bearer ${token}` }
    const created = await fetch(`${baseUrl}/v1/jobs`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'startup-check', payload: { n: 1 } }),
    })
    expect(created.status).toBe(201)
    const job = (await created.json()) as { id: string }
    const listed = await fetch(`${baseUrl}/v1/jobs`, { headers: auth })
    expect(listed.status).toBe(200)
    const list = (await listed.json()) as { data: Array<{ id: string }> }
    expect(list.data.map((d) => d.id)).toContain(job.id)
    expect((await fetch(`${baseUrl}/v1/jobs`)).status).toBe(401)

    expect(await stop(first)).toBe(0)
    // The port is free again: the server really closed.
    expect(
      await fetch(`${baseUrl}/readyz`).then(
        () => 'open',
        () => 'closed',
      ),
    ).toBe('closed')

    const second = startMain(env)
    await waitUntilReady(second, baseUrl)
    // Same data folder: the job is still there, and the first token still works (the
    // generated development key is kept beside the data).
    const again = await fetch(`${baseUrl}/v1/jobs/${job.id}`, { headers: auth })
    expect(again.status).toBe(200)
    expect(await again.json()).toMatchObject({ id: job.id, type: 'startup-check' })
    expect(await stop(second)).toBe(0)
  }, 240_000)
})

describe('an invalid environment stops start-up', () => {
  it('exits 1 naming PORT when PORT=abc', async () => {
    const started = startMain({ NODE_ENV: 'development', PORT: 'abc' })
    const { code } = await withDeadline(started.exited, EXIT_DEADLINE_MS, 'jobwire did not exit')
    expect(code).toBe(1)
    expect(started.stderr()).toMatch(/PORT/)
    expect(started.stderr().trim().split('\n')).toHaveLength(1)
  }, 60_000)

  it('exits 1 naming DATABASE_URL in production without it, before loading the embedded database', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'jobwire-startup-prod-'))
    tempDirs.push(dir)
    const started = startMain({
      NODE_ENV: 'production',
      JWT_SECRET: 'production-test-secret-0123456789abcdef',
      WATCH_TOKEN_SECRET: 'production-watch-secret-0123456789abcdef',
      EMBEDDED_PG_DATA_DIR: join(dir, 'postgres'),
      EMBEDDED_PG_PORT: String(await freePort()),
      PORT: String(await freePort()),
    })
    const { code } = await withDeadline(started.exited, EXIT_DEADLINE_MS, 'jobwire did not exit')
    expect(code).toBe(1)
    expect(started.stderr().trim()).toMatch(
      /^jobwire: Invalid environment variable DATABASE_URL: NODE_ENV=production needs it/,
    )
    expect(started.stderr().trim().split('\n')).toHaveLength(1)
    // Nothing of the embedded PostgreSQL was touched.
    expect(existsSync(join(dir, 'postgres'))).toBe(false)
  }, 60_000)

  it('exits 1 naming JWT_SECRET in production without any JWT key', async () => {
    const started = startMain({
      NODE_ENV: 'production',
      DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none',
    })
    const { code } = await withDeadline(started.exited, EXIT_DEADLINE_MS, 'jobwire did not exit')
    expect(code).toBe(1)
    expect(started.stderr()).toMatch(/JWT_SECRET/)
    expect(started.stdout()).not.toMatch(/export TOKEN=/)
  }, 60_000)
})

describe('npm run migrate', () => {
  it('migrates in production with only DATABASE_URL: no JWT key asked for', async () => {
    const database = await createTestDatabase()
    try {
      const child = spawn(process.execPath, ['--import', 'tsx', 'src/db/migrate-cli.ts'], {
        cwd: PROJECT_ROOT,
        env: {
          PATH: process.env.PATH ?? '/usr/bin:/bin',
          HOME: process.env.HOME ?? '/tmp',
          NODE_ENV: 'production',
          DATABASE_URL: database.url,
          LOG_LEVEL: 'warn',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      let out = ''
      let err = ''
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk))
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => (err += chunk))
      const code = await withDeadline(
        new Promise<number | null>((resolve) => child.once('exit', resolve)),
        EXIT_DEADLINE_MS,
        'migrate did not exit',
      )
      expect({ code, err }).toEqual({ code: 0, err: '' })
      // The test database is a clone of the migrated template: nothing left to apply.
      expect(out).toBe('no pending migrations\n')
    } finally {
      await database.drop()
    }
  }, 60_000)
})
