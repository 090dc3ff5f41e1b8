// Load-generator processes driven as one: the targets are spread over the processes and their
// answers merged, so a scenario reads "open 10,000 SSE clients" rather than four IPC loops.
import type { BenchChild } from './child.js'
import { split, type Scope } from './context.js'
import type { OpenArgs, SseClientStats } from '../clients/sse-clients.js'

export interface Target {
  job: string
  path: string
}

export class SseClientGroup {
  private constructor(readonly procs: BenchChild[]) {}

  static async start(scope: Scope, processes: number): Promise<SseClientGroup> {
    return new SseClientGroup(
      await scope.startMany('clients/sse-clients.ts', processes, { name: 'sse-clients' }),
    )
  }

  /** Opens one SSE connection per target; every connection has its snapshot on return. */
  async open(url: string, token: string, targets: Target[], concurrencyPerProcess = 64) {
    const parts = split(targets, this.procs.length)
    const results = await Promise.all(
      this.procs.map((p, i) =>
        p.call<{ opened: number; failed: number; failureSamples: string[]; ms: number }>(
          'open',
          {
            url,
            token,
            targets: parts[i]!,
            concurrency: concurrencyPerProcess,
            timeoutMs: 30_000,
          } satisfies OpenArgs,
          180_000,
        ),
      ),
    )
    const opened = results.reduce((a, r) => a + r.opened, 0)
    const failed = results.reduce((a, r) => a + r.failed, 0)
    if (failed > 0)
      throw new Error(
        `${failed} of ${targets.length} SSE connections failed: ${results.flatMap((r) => r.failureSamples).join('; ')}`,
      )
    return { opened, ms: Math.max(...results.map((r) => r.ms)) }
  }

  async arm(version: number, job?: string): Promise<number> {
    const armed = await Promise.all(
      this.procs.map((p) => p.call<{ armed: number }>('arm', { version, job })),
    )
    return armed.reduce((a, r) => a + r.armed, 0)
  }

  /** The times (shared clock) at which each armed connection reached the armed version. */
  async collect(timeoutMs: number) {
    const results = await Promise.all(
      this.procs.map((p) =>
        p.call<{ total: number; reached: number; times: number[] }>(
          'collect',
          { timeoutMs },
          timeoutMs + 10_000,
        ),
      ),
    )
    return {
      total: results.reduce((a, r) => a + r.total, 0),
      reached: results.reduce((a, r) => a + r.reached, 0),
      times: results.flatMap((r) => r.times),
    }
  }

  async stats(reset = false): Promise<SseClientStats> {
    const all = await Promise.all(this.procs.map((p) => p.call<SseClientStats>('stats', { reset })))
    const sum = (k: keyof SseClientStats) => all.reduce((a, s) => a + (s[k] as number), 0)
    return {
      connections: sum('connections'),
      open: sum('open'),
      events: sum('events'),
      snapshots: sum('snapshots'),
      patches: sum('patches'),
      merged: sum('merged'),
      errors: sum('errors'),
      testFailures: sum('testFailures'),
      idMismatches: sum('idMismatches'),
      backwards: sum('backwards'),
      lastPatchBytes: Math.max(...all.map((s) => s.lastPatchBytes)),
      latencies: all.flatMap((s) => s.latencies),
      errorSamples: all.flatMap((s) => s.errorSamples).slice(0, 5),
    }
  }

  async verify(docs: Record<string, Record<string, unknown>>, timeoutMs: number) {
    const results = await Promise.all(
      this.procs.map((p) =>
        p.call<{ checked: number; behind: number; mismatched: number; samples: unknown[] }>(
          'verify',
          { docs, timeoutMs },
          timeoutMs + 10_000,
        ),
      ),
    )
    return {
      checked: results.reduce((a, r) => a + r.checked, 0),
      behind: results.reduce((a, r) => a + r.behind, 0),
      mismatched: results.reduce((a, r) => a + r.mismatched, 0),
      samples: results.flatMap((r) => r.samples).slice(0, 3),
    }
  }

  async pauseAll(): Promise<void> {
    await Promise.all(this.procs.map((p) => p.call('pauseAll')))
  }

  async resumeAll(): Promise<void> {
    await Promise.all(this.procs.map((p) => p.call('resumeAll')))
  }

  async closeAll(): Promise<void> {
    await Promise.all(this.procs.map((p) => p.call('closeAll')))
  }
}

export interface LongPollResult {
  total: number
  answered: number
  changed: number
  timedOut: number
  errors: number
  errorSamples: string[]
  times: number[]
}

export class LongPollGroup {
  private constructor(readonly procs: BenchChild[]) {}

  static async start(scope: Scope, processes: number): Promise<LongPollGroup> {
    return new LongPollGroup(
      await scope.startMany('clients/longpoll-clients.ts', processes, { name: 'longpoll-clients' }),
    )
  }

  async park(
    url: string,
    token: string,
    targets: Array<{ job: string; since: number }>,
    timeoutSeconds: number,
    concurrencyPerProcess = 64,
  ) {
    const parts = split(targets, this.procs.length)
    await Promise.all(
      this.procs.map((p, i) =>
        p.call(
          'park',
          { url, token, targets: parts[i]!, timeoutSeconds, concurrency: concurrencyPerProcess },
          180_000,
        ),
      ),
    )
  }

  async stats(): Promise<Omit<LongPollResult, 'times'>> {
    const all = await Promise.all(
      this.procs.map((p) => p.call<Omit<LongPollResult, 'times'>>('stats')),
    )
    return mergeLongPoll(all.map((s) => ({ ...s, times: [] })))
  }

  async collect(timeoutMs: number): Promise<LongPollResult> {
    const all = await Promise.all(
      this.procs.map((p) => p.call<LongPollResult>('collect', { timeoutMs }, timeoutMs + 10_000)),
    )
    return mergeLongPoll(all)
  }

  async closeAll(): Promise<void> {
    await Promise.all(this.procs.map((p) => p.call('closeAll')))
  }
}

function mergeLongPoll(all: LongPollResult[]): LongPollResult {
  const sum = (k: 'total' | 'answered' | 'changed' | 'timedOut' | 'errors') =>
    all.reduce((a, s) => a + s[k], 0)
  return {
    total: sum('total'),
    answered: sum('answered'),
    changed: sum('changed'),
    timedOut: sum('timedOut'),
    errors: sum('errors'),
    errorSamples: all.flatMap((s) => s.errorSamples).slice(0, 5),
    times: all.flatMap((s) => s.times),
  }
}
