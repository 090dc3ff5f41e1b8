// Child processes of the bench, and the small request/response protocol they speak over IPC.
// Every child the bench starts is forked here and tracked, so the bench can stop exactly the
// processes it started (by pid, never by name) on success, on failure and on Ctrl-C.
import { fork, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'

export const BENCH_DIR = resolve(import.meta.dirname, '..')

interface Request {
  rpc: number
  cmd: string
  args: unknown
}
interface Reply {
  rpc: number
  ok: boolean
  result?: unknown
  error?: string
}
interface Ready {
  ready: true
  info: unknown
}

const started = new Set<BenchChild>()

export interface StartOptions {
  env?: Record<string, string | undefined>
  /** Extra node flags (e.g. --expose-gc); tsx is always loaded. */
  nodeArgs?: string[]
  /** How long the child may take to say it is ready (ms). */
  readyTimeoutMs?: number
  name?: string
}

/** A forked child running one of bench/**.ts under tsx, answering commands over IPC. */
export class BenchChild<Info = unknown> {
  private nextRpc = 1
  private readonly pending = new Map<
    number,
    { resolve(v: unknown): void; reject(e: Error): void }
  >()
  private exited = false
  info!: Info

  private constructor(
    readonly name: string,
    readonly proc: ChildProcess,
  ) {
    proc.on('message', (message: Reply | Ready) => {
      if ('ready' in message) return
      const waiter = this.pending.get(message.rpc)
      if (!waiter) return
      this.pending.delete(message.rpc)
      if (message.ok) waiter.resolve(message.result)
      else waiter.reject(new Error(`${this.name}: ${message.error}`))
    })
    proc.on('exit', (code, signal) => {
      this.exited = true
      started.delete(this)
      for (const waiter of this.pending.values())
        waiter.reject(new Error(`${this.name} exited (${signal ?? code}) during a command`))
      this.pending.clear()
    })
  }

  get pid(): number {
    return this.proc.pid!
  }

  static async start<Info = unknown>(
    file: string,
    options: StartOptions = {},
  ): Promise<BenchChild<Info>> {
    const path = resolve(BENCH_DIR, file)
    const proc = fork(path, [], {
      cwd: resolve(BENCH_DIR, '..'),
      execArgv: ['--import', 'tsx', ...(options.nodeArgs ?? [])],
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    })
    const child = new BenchChild<Info>(options.name ?? file, proc)
    started.add(child as BenchChild)
    const timeoutMs = options.readyTimeoutMs ?? 30_000
    child.info = await new Promise<Info>((resolveReady, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`${child.name} not ready within ${timeoutMs} ms`))
      }, timeoutMs)
      const onMessage = (message: Reply | Ready) => {
        if (!('ready' in message)) return
        clearTimeout(timer)
        proc.off('message', onMessage)
        resolveReady(message.info as Info)
      }
      proc.on('message', onMessage)
      proc.once('exit', (code) => {
        clearTimeout(timer)
        reject(new Error(`${child.name} exited with ${code} before it was ready`))
      })
    }).catch(async (error: unknown) => {
      await child.stop()
      throw error
    })
    return child
  }

  /** Sends one command and waits for its answer, bounded in time. */
  call<T = unknown>(cmd: string, args: unknown = {}, timeoutMs = 60_000): Promise<T> {
    if (this.exited) return Promise.reject(new Error(`${this.name} has exited`))
    const rpc = this.nextRpc++
    return new Promise<T>((resolveCall, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(rpc)
        reject(new Error(`${this.name}: ${cmd} took more than ${timeoutMs} ms`))
      }, timeoutMs)
      this.pending.set(rpc, {
        resolve: (v) => {
          clearTimeout(timer)
          resolveCall(v as T)
        },
        reject: (e) => {
          clearTimeout(timer)
          reject(e)
        },
      })
      this.proc.send({ rpc, cmd, args } satisfies Request)
    })
  }

  /** Resident set size of the child from /proc/<pid>/status, in KiB. */
  rssKiB(): number {
    return readRssKiB(this.pid)
  }

  /** user + system CPU time of the child so far, in ms (from /proc/<pid>/stat). */
  cpuMs(): number {
    return readCpuMs(this.pid)
  }

  /** SIGTERM, then SIGKILL after `graceMs`. Resolves when the process has exited. */
  async stop(graceMs = process.env.BENCH_CPU_PROF === '1' ? 30_000 : 3000): Promise<void> {
    if (this.exited) return
    const exited = new Promise<void>((r) => this.proc.once('exit', () => r()))
    this.proc.kill('SIGTERM')
    const timer = setTimeout(() => {
      if (!this.exited) this.proc.kill('SIGKILL')
    }, graceMs)
    await exited
    clearTimeout(timer)
  }
}

/** Stops every child still running (the bench's own, by pid). */
export async function stopAllChildren(): Promise<void> {
  await Promise.all([...started].map((c) => c.stop(1000)))
}

/** Synchronous last resort on exit: SIGKILL to every child still tracked. */
export function killAllChildrenNow(): void {
  for (const child of started) child.proc.kill('SIGKILL')
}

export function readRssKiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const match = /^VmRSS:\s+(\d+) kB/m.exec(status)
  if (!match) throw new Error(`no VmRSS for pid ${pid}`)
  return Number(match[1])
}

const CLOCK_TICKS_PER_SECOND = 100 // getconf CLK_TCK on Linux x86-64 and arm64

export function readCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // Fields after the command name (which may contain spaces) start after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const utime = Number(fields[11])
  const stime = Number(fields[12])
  return ((utime + stime) * 1000) / CLOCK_TICKS_PER_SECOND
}

// ---- child side ----

export type Handlers = Record<string, (args: never) => unknown>

/**
 * Runs inside a child: answers the parent's commands with `handlers`, says ready with
 * `info`, and exits when the parent goes away (so no load generator outlives the bench).
 */
export function serve(handlers: Handlers, info: unknown = {}, onStop?: () => Promise<void>): void {
  if (!process.send) throw new Error('serve() must run in a forked child')
  const send = (m: Reply | Ready) => process.send!(m)
  process.on('message', (message: Request) => {
    const handler = handlers[message.cmd]
    if (!handler) {
      send({ rpc: message.rpc, ok: false, error: `unknown command ${message.cmd}` })
      return
    }
    Promise.resolve()
      .then(() => handler(message.args as never))
      .then(
        (result) => send({ rpc: message.rpc, ok: true, result }),
        (error: unknown) =>
          send({
            rpc: message.rpc,
            ok: false,
            error: error instanceof Error ? (error.stack ?? error.message) : String(error),
          }),
      )
  })
  const exit = () => {
    const done = onStop ? onStop() : Promise.resolve()
    const timer = setTimeout(() => process.exit(0), 2000)
    timer.unref()
    void done.finally(() => process.exit(0))
  }
  process.on('disconnect', exit)
  process.on('SIGTERM', exit)
  send({ ready: true, info })
}

/** A shared monotonic clock (CLOCK_MONOTONIC) in ms: comparable across processes. */
export function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}

/**
 * Opens `count` connections, `concurrency` at a time, with `openOne(i)`; a failure is counted
 * and sampled, never thrown. The load generators' connect phase.
 */
export async function openConcurrently(
  count: number,
  concurrency: number,
  openOne: (i: number) => Promise<void>,
): Promise<{ opened: number; failed: number; failureSamples: string[]; ms: number }> {
  let next = 0
  let opened = 0
  const failures: string[] = []
  const started = nowMs()
  const worker = async () => {
    while (next < count) {
      const i = next++
      try {
        await openOne(i)
        opened++
      } catch (error) {
        failures.push((error as Error).message)
      }
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, concurrency) }, worker))
  return {
    opened,
    failed: failures.length,
    failureSamples: [...new Set(failures)].slice(0, 5),
    ms: nowMs() - started,
  }
}
