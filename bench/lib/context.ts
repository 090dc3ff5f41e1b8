// What every scenario gets: the bench database, a tenant with an admin token, the options,
// a place for raw figures, and helpers to start the server and load-generator children in a
// scope that stops them when the scenario ends, whatever happens.
import jwt from 'jsonwebtoken'
import { resolve } from 'node:path'
import { BENCH_DIR, BenchChild, sleep, type StartOptions } from './child.js'
import { newTenantId, type BenchDatabase } from './database.js'
import type { Row } from './table.js'
import type { ServerStats } from '../server/jobwire-server.js'

export const JWT_SECRET = 'bench-secret-bench-secret-bench-secret-0123'

export interface BenchOptions {
  /** The durations of bench/TARGETS.md (30 s row 1, 60 s idle window), not the short defaults. */
  full: boolean
  /** Multiplies client counts (0.1 for a quick smoke run). */
  scale: number
}

export interface ServerInfo {
  url: string
  pid: number
}

export type ServerChild = BenchChild<ServerInfo>

export class Scope {
  private readonly children: BenchChild[] = []

  async start<Info>(file: string, options: StartOptions = {}): Promise<BenchChild<Info>> {
    const child = await BenchChild.start<Info>(file, options)
    this.children.push(child as BenchChild)
    return child
  }

  async startMany<Info>(file: string, count: number, options: StartOptions = {}) {
    return Promise.all(
      Array.from({ length: count }, (_, i) =>
        this.start<Info>(file, { ...options, name: `${options.name ?? file}#${i}` }),
      ),
    )
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.children.splice(0).map((c) => c.stop()))
  }
}

export class Context {
  readonly tenantId = newTenantId()
  readonly token: string
  readonly raw: Record<string, unknown> = {}
  readonly rows: Row[] = []
  /** Results shared between scenarios of one run (e.g. the fan-out floor), by key. */
  readonly shared = new Map<string, unknown>()

  constructor(
    readonly db: BenchDatabase,
    readonly options: BenchOptions,
  ) {
    this.token = jwt.sign({ tenant_id: this.tenantId, role: 'admin' }, JWT_SECRET, {
      algorithm: 'HS256',
      subject: 'bench-admin',
      expiresIn: '2h',
    })
  }

  /** A count scaled by --scale, at least `min`. */
  n(count: number, min = 1): number {
    return Math.max(min, Math.round(count * this.options.scale))
  }

  /** The jobwire environment of every bench server: caps off, quiet, no demo worker. */
  serverEnv(extra: Record<string, string> = {}): Record<string, string> {
    return {
      NODE_ENV: 'test',
      LOG_LEVEL: 'silent',
      DATABASE_URL: this.db.url,
      LISTEN_DATABASE_URL: '',
      JWT_SECRET,
      JWT_PUBLIC_KEY: '',
      JWKS_URL: '',
      PORT: '0',
      HOST: '127.0.0.1',
      MIGRATE_ON_START: 'false',
      MAX_STREAMS_PER_USER: '0',
      MAX_STREAMS_PER_TENANT: '0',
      RATE_LIMIT_PER_USER: '10000000',
      RATE_LIMIT_PER_TENANT: '10000000',
      RATE_LIMIT_PER_IP: '10000000',
      LONGPOLL_MAX_SECONDS: '300',
      WORKER_ENABLED: 'false',
      LIVE_PAGE: 'false',
      REDIS_URL: '',
      BRIDGE_OUTBOUND: 'false',
      BRIDGE_INBOUND: 'false',
      SHUTDOWN_TIMEOUT_MS: '2000',
      ...extra,
    }
  }

  startServer(scope: Scope, extra: Record<string, string> = {}): Promise<ServerChild> {
    return scope.start<ServerInfo>('server/jobwire-server.ts', {
      name: 'jobwire-server',
      env: this.serverEnv(extra),
      nodeArgs: ['--expose-gc', ...profileArgs('jobwire-server')],
    })
  }

  /** Runs a scenario body with a scope whose children are stopped afterwards. */
  async scoped<T>(fn: (scope: Scope) => Promise<T>): Promise<T> {
    const scope = new Scope()
    try {
      return await fn(scope)
    } finally {
      await scope.stopAll()
    }
  }

  async fetchJson<T>(url: string): Promise<T> {
    const res = await fetch(url, { headers: { authorization: `Bearer ${this.token}` } })
    if (!res.ok) throw new Error(`GET ${url}: ${res.status} ${await res.text()}`)
    return (await res.json()) as T
  }
}

/**
 * BENCH_CPU_PROF=1 writes a V8 CPU profile of each server child to bench/results/prof/ (open
 * it in Chrome DevTools or speedscope). Profiling slows the server: never for the table.
 */
export function profileArgs(name: string): string[] {
  if (process.env.BENCH_CPU_PROF !== '1') return []
  // One file per thread (the tsx loader runs in a worker thread): Node's default names.
  return ['--cpu-prof', `--cpu-prof-dir=${resolve(BENCH_DIR, 'results', 'prof', name)}`]
}

/** Waits (bounded) until the server's counters satisfy `predicate`; returns the last reading. */
export async function waitForServer(
  server: ServerChild,
  predicate: (s: ServerStats) => boolean,
  timeoutMs: number,
): Promise<ServerStats> {
  const deadline = Date.now() + timeoutMs
  let stats = await server.call<ServerStats>('stats')
  while (!predicate(stats) && Date.now() < deadline) {
    await sleep(100)
    stats = await server.call<ServerStats>('stats')
  }
  return stats
}

/** Splits `items` round-robin into `parts` lists. */
export function split<T>(items: T[], parts: number): T[][] {
  const out: T[][] = Array.from({ length: parts }, () => [])
  items.forEach((item, i) => out[i % parts]!.push(item))
  return out
}
