// Redis for tests: the machine's (TEST_REDIS_URL, else 127.0.0.1:6379), a key prefix of the
// file's own so that files run in parallel, and a redis-server of a test's own on a free port
// that the test starts and kills (an outage made for real).
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createServer } from 'node:net'
import { Redis } from 'ioredis'
import { requiresTool } from './requires.js'

export const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'

export async function redisAnswers(url: string): Promise<boolean> {
  const client = new Redis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  })
  client.on('error', () => undefined)
  try {
    await client.connect()
    return (await client.ping()) === 'PONG'
  } catch {
    return false
  } finally {
    client.disconnect()
  }
}

/** `describe`/`it` for a file that needs Redis at REDIS_URL (skipped, saying why, without). */
export async function requiresRedis(file: string) {
  const answers = await redisAnswers(REDIS_URL)
  return requiresTool('Redis', answers ? undefined : `no Redis answers at ${REDIS_URL}`, file)
}

/** A key prefix no other test file uses: `jobwire-test:<random>:`. */
export function testKeyPrefix(): string {
  return `jobwire-test:${randomBytes(6).toString('hex')}:`
}

/** Deletes every key under `prefix` (SCAN, so it never blocks Redis). */
export async function deleteKeys(client: Redis, prefix: string): Promise<void> {
  let cursor = '0'
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500)
    if (keys.length) await client.del(...keys)
    cursor = next
  } while (cursor !== '0')
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0))
    })
  })
}

export interface OwnRedis {
  url: string
  port: number
  /** SIGKILL, and resolves once the process is gone. */
  kill(): Promise<void>
}

/** A redis-server of the test's own, without persistence, answering before this resolves. */
export async function startRedis(port?: number): Promise<OwnRedis> {
  const chosen = port ?? (await freePort())
  const child: ChildProcess = spawn(
    'redis-server',
    [
      '--port',
      String(chosen),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      '/tmp',
    ],
    { stdio: 'ignore' },
  )
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const url = `redis://127.0.0.1:${chosen}`
  const deadline = Date.now() + 10_000
  while (!(await redisAnswers(url))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL')
      throw new Error(`redis-server on port ${chosen} did not answer`)
    }
    await new Promise((r) => setTimeout(r, 50))
  }
  return {
    url,
    port: chosen,
    kill: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
      await exited
    },
  }
}
