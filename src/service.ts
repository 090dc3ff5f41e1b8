// The composition root: config → database → migrations → pool → keys → listener + hub →
// HTTP, and shutdown in the reverse order. Reading startService() from top to bottom tells
// how jobwire runs; src/main.ts only adds the process signals (and the cluster mode).
import type { Server } from 'node:http'
import type { Express } from 'express'
import type { Config } from './config/index.js'
import { fetchJobsChangedSince } from './db/catch-up.js'
import { fetchJobsByIds, type JobDocumentRow } from './db/jobs.js'
import { runMigrations } from './db/migrate.js'
import { createDb, createPool, type Db } from './db/pool.js'
import { assertServiceCanReadAllTenants, isDatabaseAnswering } from './db/service-login.js'
import { startDemoWorker } from './dev/demo-worker.js'
import { devBanner, devSecretsFile, loadOrCreateDevSecrets, signDevToken } from './dev/dev-token.js'
import { startEmbeddedPostgres } from './dev/embedded-postgres.js'
import { livePageRouter } from './dev/live-page.js'
import { toJobDocument } from './events/document.js'
import { Hub } from './events/hub.js'
import { createEventSource, type EventSource } from './events/event-source.js'
import { ReplicationSource } from './events/replication-source.js'
import { OutageCatchUp } from './events/outage-catch-up.js'
import type { ReadinessReport } from './http/app.js'
import { createAuthenticator, resolveAuthKeys } from './http/auth.js'
import { createFrontend, type FrontendDeps } from './http/frontend.js'
import { createRedisLimits } from './http/redis-limits.js'
import { listenHttp } from './http/server.js'
import { RedisBridge } from './bridge/redis-bridge.js'
import { createLogger, type Logger } from './telemetry/logger.js'
import { createMetrics } from './telemetry/metrics.js'
import { StreamRegistry } from './transports/stream-registry.js'
import { startLeaseReaper } from './worker/lease-reaper.js'

export interface RunningService {
  /** `http://host:port`, with the port the server really bound (PORT=0 picks one). */
  url: string
  server: Server
  /** The express side (everything but the edge's hot routes). */
  app: Express
  db: Db
  databaseUrl: string
  logger: Logger
  hub: Hub
  /** The event source: the LISTEN connection, or the replication stream (EVENT_SOURCE). */
  listener: EventSource
  registry: StreamRegistry
  bridge: RedisBridge | undefined
  /** Graceful stop, bounded by SHUTDOWN_TIMEOUT_MS. Idempotent. */
  close(): Promise<void>
}

export interface ServiceOptions {
  logger?: Logger
  /** Where rate limits and stream caps are counted (cluster mode); this process otherwise.
   * Redis (LIMITS_STORE=redis) wins over it. */
  stores?: FrontendDeps['stores']
  /** The database URL to use instead of starting the embedded one (cluster workers). */
  databaseUrl?: string
  /** A cluster worker: the primary prints the development banner, once for all. */
  isClusterWorker?: boolean
}

export async function startService(
  config: Readonly<Config>,
  options: ServiceOptions = {},
): Promise<RunningService> {
  const logger =
    options.logger ?? createLogger({ level: config.LOG_LEVEL, pretty: config.logPretty })
  const cleanup: Array<() => Promise<void>> = []
  const runCleanup = async () => {
    for (const step of cleanup.reverse()) {
      await step().catch((error: unknown) => logger.warn({ err: error }, 'error during shutdown'))
    }
  }

  try {
    // 1. The database: DATABASE_URL, or an embedded PostgreSQL in a data folder.
    let databaseUrl = options.databaseUrl ?? config.DATABASE_URL
    let embeddedDataDir: string | undefined
    if (databaseUrl === undefined) {
      const embedded = await startEmbeddedPostgres({
        dataDir: config.EMBEDDED_PG_DATA_DIR,
        port: config.EMBEDDED_PG_PORT,
        logger,
        isLogical: config.EVENT_SOURCE === 'replication',
      })
      cleanup.push(() => embedded.stop())
      databaseUrl = embedded.url
      embeddedDataDir = embedded.dataDir
    }

    // 2. Migrations (node-pg-migrate; a second instance waits for the first one's lock), over
    //    the session URL: the lock cannot live behind a transaction-mode pooler.
    if (config.MIGRATE_ON_START)
      await runMigrations(config.LISTEN_DATABASE_URL ?? databaseUrl, logger)

    // 3. The query pool (application_name jobwire) and kysely over it.
    const pool = createPool({
      connectionString: databaseUrl,
      max: config.DB_POOL_MAX,
      statementTimeoutMs: config.DB_STATEMENT_TIMEOUT_MS,
    })
    let isStopping = false
    pool.on('error', (error) => {
      // At shutdown the last connections may still be closing when the embedded database
      // stops: expected, not worth a warning.
      if (isStopping) logger.debug({ err: error }, 'idle database connection closed at shutdown')
      else logger.warn({ err: error }, 'idle database connection failed')
    })
    const db = createDb(pool, { preparedStatements: config.DB_PREPARED_STATEMENTS })
    cleanup.push(() => db.destroy())
    await assertServiceCanReadAllTenants(db, logger)

    // 4. Keys: the configured JWT key, or (development only) a generated one.
    const keys = resolveAuthKeys(config, () => loadOrCreateDevSecrets(config.EMBEDDED_PG_DATA_DIR))
    const auth = createAuthenticator({
      config: { ...config, jwt: keys.jwt },
      watchTokenSecret: keys.watchTokenSecret,
    })
    // The development admin token for the demo tenant: printed and handed to the live page.
    const devToken =
      keys.isDevelopmentKey && keys.jwt.kind === 'secret'
        ? signDevToken(keys.jwt.secret, { sub: 'dev-admin', role: 'admin' })
        : undefined

    // 4b. Shared limits (LIMITS_STORE=redis, the default with REDIS_URL): request limits and
    //     stream caps count in Redis for every instance, over the cluster's if any; they count
    //     in this process while Redis does not answer (docs/production.md, "Scaling out").
    const limits =
      config.limitsStore === 'redis' && config.REDIS_URL
        ? createRedisLimits({
            redisUrl: config.REDIS_URL,
            config,
            logger: logger.child({ component: 'limits' }),
          })
        : undefined
    if (limits) cleanup.push(() => limits.close())
    await limits?.start()

    // 5. The event pipeline: the one event source feeds the hub — NOTIFY payloads the hub
    //    reads rows for, or whole rows from logical replication (EVENT_SOURCE,
    //    docs/production.md); after a reconnect the outage is caught up.
    const toFetched = (row: JobDocumentRow) => ({
      doc: toJobDocument(row),
      tenantId: row.tenant_id,
      ownerId: row.owner_id,
    })
    const hub = new Hub({
      fetchJobs: async (ids) => (await fetchJobsByIds(db, ids)).map(toFetched),
      logger: logger.child({ component: 'hub' }),
      historySize: config.JOB_HISTORY_SIZE,
      batchMaxIds: config.BATCH_MAX_IDS,
      batchWindowMs: config.BATCH_WINDOW_MS,
      onLatency: (ms) => metrics.latencyMs(ms),
    })
    const catchUp = new OutageCatchUp({
      hub,
      logger,
      fetchChangedSince: async (tenants, since, limit) =>
        (await fetchJobsChangedSince(db, tenants, since, limit)).map(toFetched),
    })
    const listener = await createEventSource({
      config,
      connectionString: config.LISTEN_DATABASE_URL ?? databaseUrl,
      db,
      hub,
      catchUp,
      logger,
    })
    // The database answers the pool again: the listener need not wait out its backoff.
    pool.on('connect', () => listener.retryNow())
    // The stream registry and the metrics exist before the first notification can arrive.
    const registry = new StreamRegistry({ heartbeatMs: config.SSE_HEARTBEAT_MS })
    const metrics = createMetrics({
      hub,
      listener,
      replication: listener instanceof ReplicationSource ? listener.stats : undefined,
      registry,
      limits: limits?.link,
      tenantLabel: config.METRICS_TENANT_LABEL,
    })
    registry.onChange = (kind, tenantId, delta) => metrics.streamChanged(kind, tenantId, delta)
    await listener.start()
    hub.startSweep(config.SWEEP_INTERVAL_MS)
    cleanup.push(async () => {
      hub.stop()
      await listener.stop()
    })

    // 6. Optional Redis bridge (events out to jobs:{id}:events, legacy reports in).
    let bridge: RedisBridge | undefined
    if (config.REDIS_URL && (config.BRIDGE_OUTBOUND || config.BRIDGE_INBOUND)) {
      const started = new RedisBridge({
        redisUrl: config.REDIS_URL,
        outbound: config.BRIDGE_OUTBOUND,
        inbound: config.BRIDGE_INBOUND,
        hub,
        db,
        logger: logger.child({ component: 'redis-bridge' }),
      })
      await started.start()
      cleanup.push(() => started.stop())
      bridge = started
    }

    // 7. Workers: expired leases are reaped here too (a dead worker's job must not wait for
    //    another worker to come), and in development the demo worker runs `demo` jobs.
    if (config.LEASE_REAPER_INTERVAL_MS > 0) {
      const reaper = startLeaseReaper({
        db,
        intervalMs: config.LEASE_REAPER_INTERVAL_MS,
        logger: logger.child({ component: 'lease-reaper' }),
      })
      cleanup.push(() => reaper.stop())
    }
    if (config.workerEnabled) {
      const demo = startDemoWorker({
        pool,
        logger: logger.child({ component: 'demo-worker' }),
        concurrency: config.WORKER_CONCURRENCY,
        leaseSeconds: config.LEASE_SECONDS,
        reapIntervalMs: 0, // the service reaps expired leases itself (above)
      })
      cleanup.push(() => demo.stop({ graceMs: 2000 }))
    }

    // 8. HTTP: the edge serves the hot routes, express the rest; the compatibility routes
    //    (COMPAT_ROUTES, docs/compat.md) ride on both.
    if (config.COMPAT_ROUTES.length > 0)
      logger.info({ sections: config.COMPAT_ROUTES }, 'compatibility routes are on')
    if (config.COMPAT_ANONYMOUS_READ)
      logger.warn(
        config.COMPAT_ROUTES.includes('jobs')
          ? 'COMPAT_ANONYMOUS_READ is on: GET /jobs/{id} reads a job by its UUID without any token'
          : 'COMPAT_ANONYMOUS_READ is on but COMPAT_ROUTES has no jobs section: it opens nothing',
      )
    const readiness = async (): Promise<ReadinessReport> => {
      const database = (await isDatabaseAnswering(db)) ? 'ok' : 'failing'
      const listenerCheck = listener.isConnected ? 'ok' : 'failing'
      const redis = [bridge?.status, limits?.link.status].filter((s) => s !== undefined)
      // A pooled connection that survived the outage (or PgBouncer's) answers without a new
      // connect: a passing check is the same hint as the pool's connect.
      if (database === 'ok' && listenerCheck === 'failing') listener.retryNow()
      return {
        ready: database === 'ok' && listenerCheck === 'ok',
        checks: {
          database,
          listener: listenerCheck,
          ...(redis.length ? { redis: redis.every((s) => s === 'ok') ? 'ok' : 'degraded' } : {}),
        },
      }
    }
    const frontend = createFrontend({
      config,
      logger,
      db,
      hub,
      registry,
      auth,
      metrics,
      readiness,
      stores: limits?.stores ?? options.stores,
      routers: config.livePage ? [livePageRouter({ path: config.LIVE_PAGE_PATH, devToken })] : [],
    })
    const http = await listenHttp(frontend, {
      host: config.HOST,
      port: config.PORT,
      shutdownTimeoutMs: config.SHUTDOWN_TIMEOUT_MS,
    })
    logger.info({ url: http.url, embedded: config.isEmbeddedDatabase }, 'jobwire is listening')
    if (devToken && !options.isClusterWorker) {
      const state = {
        dataDir: embeddedDataDir,
        secretsFile: devSecretsFile(config.EMBEDDED_PG_DATA_DIR),
      }
      process.stdout.write(devBanner(http.url, devToken, config.livePage, state) + '\n')
    }

    let closing: Promise<void> | undefined
    const close = () =>
      (closing ??= (async () => {
        logger.info('shutting down')
        isStopping = true
        await http.close(() => frontend.closeStreams())
        await runCleanup()
        logger.info('stopped')
      })())

    return {
      url: http.url,
      server: http.server,
      app: frontend.app,
      db,
      databaseUrl,
      logger,
      hub,
      listener,
      registry,
      bridge,
      close,
    }
  } catch (error) {
    await runCleanup()
    throw error
  }
}
