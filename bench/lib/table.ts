// The result table: one line per measured figure, grouped under the rows of bench/TARGETS.md.
// A target that was not measured in this run still prints, as "not measured" with the reason.

export type Verdict = 'pass' | 'fail' | 'info' | 'not measured'

export interface Row {
  /** The row of bench/TARGETS.md (1–14). */
  n: number
  metric: string
  jobwire: string
  floor: string
  ratio: string
  target: string
  verdict: Verdict
}

/** The rows of bench/TARGETS.md, as they print when not measured. */
export const TARGETS: ReadonlyArray<{ n: number; metric: string; target: string; why: string }> = [
  {
    n: 1,
    metric: '1k SSE clients, 500 updates/s: commit → event p50 / p99, lost',
    target: 'p50 ≤ 3 × raw LISTEN and ≤ 2 ms; p99 ≤ 20 ms; 0 lost',
    why: 'scenario `latency` not run',
  },
  {
    n: 2,
    metric: '1 update → 10k SSE clients: last client has it',
    target: '≤ 1.2 × bare-socket fan-out',
    why: 'scenario `fanout` not run',
  },
  {
    n: 3,
    metric: 'RSS per idle SSE connection (10k)',
    target: '≤ 1.5 × node:http',
    why: 'scenario `fanout` (or `memory`) not run',
  },
  {
    n: 4,
    metric: '10k idle watchers (SSE + long-poll): DB queries caused',
    target: '0 beyond the safety sweep',
    why: 'scenario `idle` not run',
  },
  {
    n: 5,
    metric: '10k parked long-polls, 1 change per job: all answered',
    target: '≤ 1.5 × fan-out floor; 0 queries parked',
    why: 'scenario `longpoll` not run',
  },
  {
    n: 6,
    metric: 'GET /v1/jobs/:id, 50 connections: req/s with JWT + RLS',
    target: '≥ 0.7 × without JWT/RLS; p99 ≤ 30 ms',
    why: 'scenario `get` not run',
  },
  {
    n: 7,
    metric: 'UPDATE commits/s through the trigger (1 / 8 writers)',
    target: '≥ 85 % of raw UPDATE at 1 writer',
    why: 'scenario `update` not run',
  },
  {
    n: 8,
    metric: 'slow client, 10k changes: server memory',
    target: 'within 5 MB; converges',
    why: 'scenario `slow-client` not run',
  },
  {
    n: 9,
    metric: '2 API processes: delivery on both',
    target: 'every change on both; ≤ 1.2 × single-process latency',
    why: 'scenario `multi` not run',
  },
  {
    n: 10,
    metric: 'vs naive polling stream, 1k clients: DB queries/s, median latency',
    target: '≥ 100 × fewer queries, ≥ 100 × lower median',
    why: 'scenario `polling` not run',
  },
  {
    n: 11,
    metric: 'vs per-subscriber authorisation, 1k subscribers: DB queries per event',
    target: '1 batched read per change instead of 1,000',
    why: 'scenario `authz` not run',
  },
  {
    n: 12,
    metric: 'vs BullMQ QueueEvents → SSE: latency, CPU per 1k events',
    target: 'latency ≤ peer; CPU < peer',
    why: 'scenario `bullmq` not run',
  },
  {
    n: 13,
    metric: 'rows 2 and 6 on all cores (WEB_CONCURRENCY=2)',
    target: 'fan-out < 1 × the single-process floor; GET ≥ 1.4 × one process',
    why: 'scenario `cluster` not run',
  },
  {
    n: 14,
    metric: 'row 7 and row 1 with the logical-replication event source',
    target: '≥ 0.9 × raw UPDATE at 8 writers; latency beside NOTIFY’s',
    why: 'scenario `replication` not run',
  },
]

export function notMeasured(n: number, why?: string): Row {
  const t = TARGETS.find((x) => x.n === n)!
  return {
    n,
    metric: t.metric,
    jobwire: why ? `not measured: ${why}` : 'not measured',
    floor: '—',
    ratio: '—',
    target: t.target,
    verdict: 'not measured',
  }
}

/** Orders rows by target number, filling every target without a row with "not measured". */
export function completeRows(rows: Row[], reasons: Map<number, string>): Row[] {
  const out: Row[] = []
  for (const t of TARGETS) {
    const mine = rows.filter((r) => r.n === t.n)
    out.push(...(mine.length ? mine : [notMeasured(t.n, reasons.get(t.n) ?? t.why)]))
  }
  return out
}

export function renderTable(rows: Row[]): string {
  const header = ['#', 'metric', 'jobwire', 'floor or peer', 'ratio', 'target', 'pass/fail']
  const lines = [
    `| ${header.join(' | ')} |`,
    `| ${header.map(() => '---').join(' | ')} |`,
    ...rows.map(
      (r) =>
        `| ${[r.n, r.metric, r.jobwire, r.floor, r.ratio, r.target, r.verdict]
          .map((c) => String(c).replace(/\|/g, '\\|'))
          .join(' | ')} |`,
    ),
  ]
  return lines.join('\n')
}

export function fmtMs(ms: number): string {
  if (!Number.isFinite(ms)) return 'n/a'
  if (ms < 10) return `${ms.toFixed(2)} ms`
  if (ms < 100) return `${ms.toFixed(1)} ms`
  return `${Math.round(ms)} ms`
}

export function fmtRatio(value: number): string {
  if (!Number.isFinite(value)) return 'n/a'
  if (value >= 100) return `${Math.round(value)} ×`
  return `${value.toFixed(2)} ×`
}

export function fmtNum(value: number, unit = ''): string {
  if (!Number.isFinite(value)) return 'n/a'
  const s =
    Math.abs(value) >= 1000
      ? Math.round(value).toLocaleString('en-US')
      : Math.abs(value) >= 10
        ? value.toFixed(1)
        : value.toFixed(2)
  return unit ? `${s} ${unit}` : s
}

export function verdict(ok: boolean): Verdict {
  return ok ? 'pass' : 'fail'
}
