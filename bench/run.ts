// `npm run bench [-- <scenario>…] [--full] [--scale=0.1]`: runs the bench/TARGETS.md scenarios
// against a fresh database on the local PostgreSQL, prints one markdown table and writes the raw
// figures to bench/results/<ISO date>.json. The server and every load generator are child
// processes; the bench stops exactly those it started. See bench/README.md.
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import { resolve } from 'node:path'
import { BENCH_DIR, killAllChildrenNow, stopAllChildren } from './lib/child.js'
import { Context, type BenchOptions } from './lib/context.js'
import { createBenchDatabase } from './lib/database.js'
import { completeRows, renderTable } from './lib/table.js'
import { fanoutScenario } from './scenarios/fanout.js'
import { latencyScenario } from './scenarios/latency.js'
import { idleScenario } from './scenarios/idle.js'
import { longPollScenario } from './scenarios/longpoll.js'
import { getScenario } from './scenarios/get.js'
import { updateScenario } from './scenarios/update.js'
import { pollingScenario } from './scenarios/polling.js'
import { authzScenario } from './scenarios/authz.js'
import { bullmqScenario } from './scenarios/bullmq.js'
import { slowClientScenario } from './scenarios/slow-client.js'
import { multiScenario } from './scenarios/multi.js'
import { replicationScenario } from './scenarios/replication.js'
import { clusterScenario } from './scenarios/cluster.js'
import { wsMemoryScenario } from './scenarios/ws-memory.js'

const WANTED_NOFILE = 65_536
/** The whole run must stay under 10 minutes; a scenario that hangs is cut off here. */
const RUN_BUDGET_MS = 9.5 * 60_000

interface Scenario {
  targets: number[]
  run(ctx: Context): Promise<void>
}

const SCENARIOS: Record<string, Scenario> = {
  latency: { targets: [1], run: latencyScenario },
  fanout: { targets: [2, 3], run: fanoutScenario },
  'ws-memory': { targets: [3], run: wsMemoryScenario },
  idle: { targets: [4], run: idleScenario },
  longpoll: { targets: [5], run: longPollScenario },
  get: { targets: [6], run: getScenario },
  update: { targets: [7], run: updateScenario },
  'slow-client': { targets: [8], run: slowClientScenario },
  multi: { targets: [9], run: multiScenario },
  polling: { targets: [10], run: pollingScenario },
  authz: { targets: [11], run: authzScenario },
  bullmq: { targets: [12], run: bullmqScenario },
  cluster: { targets: [13], run: clusterScenario },
  replication: { targets: [14], run: replicationScenario },
}
const ALIASES: Record<string, string> = { memory: 'fanout' }

function parseArgs(argv: string[]): { names: string[]; options: BenchOptions } {
  const options: BenchOptions = { full: false, scale: 1 }
  const names: string[] = []
  for (const arg of argv) {
    if (arg === '--full') options.full = true
    else if (arg.startsWith('--scale=')) options.scale = Number(arg.slice('--scale='.length))
    else if (arg.startsWith('-')) throw new Error(`unknown flag ${arg}`)
    else {
      const name = ALIASES[arg] ?? arg
      if (!SCENARIOS[name])
        throw new Error(
          `unknown scenario ${arg}; known: ${[...Object.keys(SCENARIOS), ...Object.keys(ALIASES)].join(', ')}`,
        )
      if (!names.includes(name)) names.push(name)
    }
  }
  if (!(options.scale > 0 && options.scale <= 1)) throw new Error('--scale must be in (0, 1]')
  return { names: names.length ? names : Object.keys(SCENARIOS), options }
}

/**
 * 10,000 sockets per process need a high open-files limit. Node raises its soft limit to the
 * hard limit at start-up, so the question is whether the hard limit can go higher: when
 * `ulimit -n 65536` is permitted (root with CAP_SYS_RESOURCE) and we are below it, re-run this
 * very command under it; otherwise go on with what we have (children inherit it).
 */
function ensureFileLimit(): void {
  const limit = (script: string) =>
    execFileSync('bash', ['-c', script], { encoding: 'utf8' }).trim()
  const current = Number(limit('ulimit -Sn'))
  if (current >= WANTED_NOFILE || process.env.JOBWIRE_BENCH_REEXEC === '1') return
  const canRaise = limit(`ulimit -n ${WANTED_NOFILE} 2>/dev/null && echo yes || echo no`) === 'yes'
  if (!canRaise) {
    process.stderr.write(
      `bench: open-files limit ${current} (${WANTED_NOFILE} not permitted here)${current < 12_000 ? '; 10k-socket scenarios may fail' : ''}\n`,
    )
    return
  }
  process.stderr.write(
    `bench: open-files limit ${current} → ${WANTED_NOFILE}; re-running under it\n`,
  )
  const command = [process.execPath, ...process.execArgv, ...process.argv.slice(1)]
    .map((a) => `'${a.replace(/'/g, `'\\''`)}'`)
    .join(' ')
  const result = spawnSync('bash', ['-c', `ulimit -n ${WANTED_NOFILE} && exec ${command}`], {
    stdio: 'inherit',
    env: { ...process.env, JOBWIRE_BENCH_REEXEC: '1' },
  })
  process.exit(result.status ?? 1)
}

async function main(): Promise<void> {
  ensureFileLimit()
  const { names, options } = parseArgs(process.argv.slice(2))
  const startedAt = new Date()
  const deadline = Date.now() + RUN_BUDGET_MS
  let exitCode = 0
  const db = await createBenchDatabase()
  const onSignal = () => {
    killAllChildrenNow()
    void db.drop().finally(() => process.exit(130))
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  process.once('exit', killAllChildrenNow)
  const ctx = new Context(db, options)
  const reasons = new Map<number, string>()
  const errors: Record<string, string> = {}
  try {
    for (const name of names) {
      const scenario = SCENARIOS[name]!
      const left = deadline - Date.now()
      if (left < 20_000) {
        for (const n of scenario.targets) reasons.set(n, 'skipped: run time budget spent')
        continue
      }
      process.stderr.write(`bench: ${name}…\n`)
      const t0 = Date.now()
      try {
        await withTimeout(scenario.run(ctx), left, name)
      } catch (error) {
        exitCode = 1
        const message = error instanceof Error ? error.message : String(error)
        errors[name] = error instanceof Error ? (error.stack ?? message) : message
        process.stderr.write(`bench: ${name} failed: ${message}\n`)
        for (const n of scenario.targets)
          if (!ctx.rows.some((r) => r.n === n)) reasons.set(n, `scenario \`${name}\` failed`)
        await stopAllChildren()
      }
      process.stderr.write(`bench: ${name} done in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`)
    }
  } finally {
    await stopAllChildren()
    await db.drop().catch((error: unknown) => {
      process.stderr.write(`bench: could not drop ${db.name}: ${String(error)}\n`)
    })
  }

  const rows = completeRows(ctx.rows, reasons)
  const table = renderTable(rows)
  process.stdout.write(`\n${table}\n\n`)
  const resultsDir = resolve(BENCH_DIR, 'results')
  mkdirSync(resultsDir, { recursive: true })
  const file = resolve(resultsDir, `${startedAt.toISOString().replace(/:/g, '-')}.json`)
  writeFileSync(
    file,
    JSON.stringify(
      {
        startedAt: startedAt.toISOString(),
        finishedAt: new Date().toISOString(),
        command: ['npm run bench --', ...process.argv.slice(2)].join(' '),
        options,
        machine: {
          cpus: cpus().length,
          cpuModel: cpus()[0]?.model,
          totalMemGiB: Math.round(totalmem() / 2 ** 30),
          node: process.version,
        },
        scenarios: names,
        rows,
        table,
        raw: ctx.raw,
        errors,
      },
      null,
      2,
    ),
  )
  process.stdout.write(`raw figures: ${file}\n`)
  process.exitCode = exitCode
}

function withTimeout<T>(promise: Promise<T>, ms: number, name: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${name} exceeded ${Math.round(ms / 1000)} s`)), ms)
    }),
  ]).finally(() => clearTimeout(timer))
}

await main()
