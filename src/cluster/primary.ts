// The primary of a cluster (WEB_CONCURRENCY > 1, docs/production.md "All cores"). Owns what
// there is one of per machine — the embedded PostgreSQL when DATABASE_URL is unset, the
// migrations, the development key and banner — and forks the workers: each a whole instance
// (its own listener, hub, pool, HTTP server on the shared port; src/cluster/worker.ts). It
// hosts the counters they share — request limits in express-rate-limit's cluster memory
// store, stream caps in ClusterSlotTable — replaces a worker that dies (at once, or after a
// delay that doubles, 1 s up to 30 s, while workers keep dying within 10 s of their start),
// and on SIGTERM/SIGINT stops them all: each drains its streams within SHUTDOWN_TIMEOUT_MS,
// a worker still there 5 s later is killed, then the embedded database stops.
import cluster, { type Worker } from 'node:cluster'
import { ClusterMemoryStorePrimary } from '@express-rate-limit/cluster-memory-store'
import type { Config } from '../config/index.js'
import { runMigrations } from '../db/migrate.js'
import {
  devBanner,
  devSecretsFile,
  loadOrCreateDevSecrets,
  signDevToken,
} from '../dev/dev-token.js'
import { startEmbeddedPostgres, type EmbeddedDatabase } from '../dev/embedded-postgres.js'
import { createLogger } from '../telemetry/logger.js'
import { ClusterSlotTable } from './stream-slots.js'
import { WORKER_DATABASE_URL, type WorkerReport } from './worker.js'

/** A worker that dies sooner than this after its start counts as a crash loop. */
const QUICK_EXIT_MS = 10_000
const RESPAWN_DELAY_MIN_MS = 1000
const RESPAWN_DELAY_MAX_MS = 30_000
/** Beyond SHUTDOWN_TIMEOUT_MS, how long a stopping worker gets before it is killed. */
const KILL_AFTER_MS = 5000

export interface PrimaryOptions {
  /** Stop on SIGTERM/SIGINT and exit (default). An embedder (the bench) calls stop() itself. */
  handleSignals?: boolean
}

export interface RunningPrimary {
  /** Drains and stops every worker, then the embedded database; the same promise each call. */
  stop(): Promise<void>
}

export async function runPrimary(
  config: Readonly<Config>,
  options: PrimaryOptions = {},
): Promise<RunningPrimary> {
  const logger = createLogger({ level: config.LOG_LEVEL, pretty: config.logPretty }).child({
    component: 'cluster',
  })
  let embedded: EmbeddedDatabase | undefined
  try {
    let databaseUrl = config.DATABASE_URL
    if (databaseUrl === undefined) {
      embedded = await startEmbeddedPostgres({
        dataDir: config.EMBEDDED_PG_DATA_DIR,
        port: config.EMBEDDED_PG_PORT,
        logger,
        isLogical: config.EVENT_SOURCE === 'replication',
      })
      databaseUrl = embedded.url
    }
    if (config.MIGRATE_ON_START)
      await runMigrations(config.LISTEN_DATABASE_URL ?? databaseUrl, logger)
    // Created here, before the workers race to create it.
    const devSecrets =
      config.jwt.kind === 'none' ? loadOrCreateDevSecrets(config.EMBEDDED_PG_DATA_DIR) : undefined
    new ClusterMemoryStorePrimary().init()
    const slots = new ClusterSlotTable()
    const env = { [WORKER_DATABASE_URL]: databaseUrl, MIGRATE_ON_START: 'false' }

    let isStopping = false
    let quickExits = 0
    let hasAnnounced = false
    const fork = () => {
      const worker = cluster.fork(env)
      const startedAt = Date.now()
      slots.serve(worker)
      worker.on('message', (message: unknown) => {
        const report = message as Partial<WorkerReport> | undefined
        if (report?.from !== 'jobwire-cluster' || typeof report.listening !== 'string') return
        quickExits = 0
        if (hasAnnounced) return
        hasAnnounced = true
        logger.info(
          { url: report.listening, workers: config.webConcurrency },
          'jobwire is listening',
        )
        if (devSecrets) {
          const token = signDevToken(devSecrets.jwtSecret, { sub: 'dev-admin', role: 'admin' })
          const state = {
            dataDir: embedded?.dataDir,
            secretsFile: devSecretsFile(config.EMBEDDED_PG_DATA_DIR),
          }
          process.stdout.write(devBanner(report.listening, token, config.livePage, state) + '\n')
        }
      })
      worker.once('exit', (code, signal) => {
        if (isStopping) return
        const isQuick = Date.now() - startedAt < QUICK_EXIT_MS
        quickExits = isQuick ? quickExits + 1 : 0
        const delay =
          quickExits <= 1
            ? 0
            : Math.min(RESPAWN_DELAY_MAX_MS, RESPAWN_DELAY_MIN_MS * 2 ** (quickExits - 2))
        logger.warn({ pid: worker.process.pid, code, signal, delay }, 'worker died; replacing it')
        setTimeout(fork, delay).unref()
      })
    }
    for (let i = 0; i < config.webConcurrency; i++) fork()

    let stopping: Promise<void> | undefined
    const stop = () => {
      isStopping = true
      stopping ??= (async () => {
        logger.info('shutting down the workers')
        await stopWorkers(Object.values(cluster.workers ?? {}), config.SHUTDOWN_TIMEOUT_MS)
        await embedded?.stop()
      })()
      return stopping
    }
    if (options.handleSignals ?? true) {
      let signals = 0
      for (const signal of ['SIGTERM', 'SIGINT'] as const) {
        process.on(signal, () => {
          if (++signals > 1) process.exit(1) // a second Ctrl-C does not wait
          stop().then(
            () => process.exit(0),
            (error: unknown) => {
              logger.error({ err: error }, 'shutdown failed')
              process.exit(1)
            },
          )
        })
      }
    }
    return { stop }
  } catch (error) {
    await embedded?.stop().catch(() => undefined)
    throw error
  }
}

/** SIGTERM to every worker; resolves once all have exited (killing stragglers after the bound). */
async function stopWorkers(
  workers: ReadonlyArray<Worker | undefined>,
  shutdownTimeoutMs: number,
): Promise<void> {
  await Promise.all(
    workers.map(async (worker) => {
      if (!worker || worker.isDead()) return
      const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()))
      worker.process.kill('SIGTERM')
      const killer = setTimeout(
        () => worker.process.kill('SIGKILL'),
        shutdownTimeoutMs + KILL_AFTER_MS,
      )
      await exited
      clearTimeout(killer)
    }),
  )
}
