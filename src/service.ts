// The composition root: config → database → migrations → pool → keys → listener + hub →
// app → server, and shutdown in the reverse order. Reading startService() from top to
// bottom tells how jobwire runs; src/main.ts only adds the process signals.
import { hkdfSync } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { sql } from 'kysely'
import type { Config } from './config/index.js'
import { runMigrations } from './db/migrate.js'
import { createDb, createPool, type Db } from './db/pool.js'
import { devBanner, devSecretsFile, loadOrCreateDevSecrets, signDevToken } from './dev/dev-token.js'
import { startEmbeddedPostgres, type EmbeddedDatabase } from './dev/embedded-postgres.js'
import { createApp, type ReadinessReport } from './http/app.js'
import { createAuthenticator } from './http/auth.js'
import { jobRoutes } from './http/routes/jobs.js'
import { createLogger, type Logger } from './telemetry/logger.js'
import { fetchJobsByIds, type JobDocumentRow } from './db/jobs.js'
import { fetchJobsChangedSince } from './db/catch-up.js'
import { toJobDocument } from './events/document.js'
import { Hub } from './events/hub.js'
import { Listener } from './events/listener.js'
import { streamRoutes } from './http/routes/streams.js'
import { multiplexedRoutes } from './http/routes/multiplexed.js'
import { attachWebSockets } from './http/ws-server.js'
import { createRateLimits } from './http/rate-limit.js'
import { StreamRegistry } from './transports/stream-registry.js'
import { RedisBridge } from './bridge/redis-bridge.js'
import { startDemoWorker } from './dev/demo-worker.js'
import { livePageRouter } from './dev/live-page.js'
import { reapExpiredLeases } from './worker/sql.js'
import { createMetrics } from './telemetry/metrics.js'

/** Feed catch-up after a listener outage: how far back before the outage, and how many jobs. */
const CATCH_UP_MARGIN_MS = 5000
const CATCH_UP_MAX_JOBS = 10_000

export interface RunningService {
  /** `http://host:port`, with the port the server really bound (PORT=0 picks one). */
  url: string
  server: Server
  db: Db
  databaseUrl: string
  logger: Logger
  hub: Hub
  listener: Listener
  registry: StreamRegistry
  bridge: RedisBridge | undefined
  /** Graceful stop, bounded by SHUTDOWN_TIMEOUT_MS. Idempotent. */
  close(): Promise<void>
}

export async function startService(
  config: Readonly<Config>,
  options: { logger?: Logger } = {},
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
    let embedded: EmbeddedDatabase | undefined
    if (config.isEmbeddedDatabase) {
      embedded = await startEmbeddedPostgres({
        dataDir: config.EMBEDDED_PG_DATA_DIR,
        port: config.EMBEDDED_PG_PORT,
        logger,
      })
      cleanup.push(() => embedded!.stop())
    }
    const databaseUrl = config.DATABASE_URL ?? embedded!.url

    // 2. Migrations (node-pg-migrate; an advisory lock makes concurrent start-ups safe).
    //    Over the session URL: node-pg-migrate's advisory lock cannot live behind a
    //    transaction-mode pooler (LISTEN_DATABASE_URL is the direct connection when set).
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
      // At shutdown the pool's last connections may still be closing when the embedded
      // database stops: expected, not worth a warning.
      if (isStopping) logger.debug({ err: error }, 'idle database connection closed at shutdown')
      else logger.warn({ err: error }, 'idle database connection failed')
    })
    const db = createDb(pool)
    cleanup.push(() => db.destroy())

    // The hub reads watched jobs across tenants as the service's login: that needs a
    // superuser, BYPASSRLS or the job_queue_service policy (granted to the migrating login).
    await assertServiceCanReadAllTenants(db, logger)

    // 4. Keys: the configured JWT key, or (development only) a generated one.
    const devSecrets =
      config.jwt.kind === 'none' ||
      (config.WATCH_TOKEN_SECRET === undefined && config.jwt.kind !== 'secret')
        ? loadOrCreateDevSecrets(config.EMBEDDED_PG_DATA_DIR)
        : undefined
    const jwtConfig =
      config.jwt.kind === 'none'
        ? { kind: 'secret' as const, secret: devSecrets!.jwtSecret, algorithms: ['HS256'] }
        : config.jwt
    const auth = createAuthenticator({
      config: { ...config, jwt: jwtConfig },
      watchTokenSecret:
        config.WATCH_TOKEN_SECRET ??
        (jwtConfig.kind === 'secret'
          ? deriveWatchSecret(jwtConfig.secret)
          : devSecrets!.watchTokenSecret),
    })

    // The development admin token for the demo tenant: printed at start-up and handed to the
    // live page. Only when no key is configured (never in production: config refuses).
    const devToken =
      config.jwt.kind === 'none' && jwtConfig.kind === 'secret'
        ? signDevToken(jwtConfig.secret, { sub: 'dev-admin', role: 'admin' })
        : undefined

    // 5. The event pipeline: the hub reads changed rows in batches; the one listener
    //    connection feeds it; after a reconnect every watched job is re-read.
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
    const listener = new Listener({
      connectionString: config.LISTEN_DATABASE_URL ?? databaseUrl,
      logger: logger.child({ component: 'listener' }),
      reconnectMinMs: config.LISTENER_RECONNECT_MIN_MS,
      reconnectMaxMs: config.LISTENER_RECONNECT_MAX_MS,
      onNotification: (payload) => hub.handlePayload(payload),
      onDisconnected: () => (disconnectedAt ??= Date.now()),
      onConnected: ({ isReconnect }) => {
        if (!isReconnect) return
        hub.refreshWatched({ includeTerminal: true })
        // Feeds (and the bridge) also see jobs nobody watched one by one: read what changed
        // during the gap, with a margin for clock skew and transactions that committed late.
        const since = disconnectedAt
        disconnectedAt = undefined
        const tenants = hub.feedTenants()
        if (since === undefined || (tenants !== 'all' && tenants.length === 0)) return
        fetchJobsChangedSince(
          db,
          tenants,
          new Date(since - CATCH_UP_MARGIN_MS),
          CATCH_UP_MAX_JOBS,
        ).then(
          (rows) => {
            if (rows.length >= CATCH_UP_MAX_JOBS)
              logger.warn({ rows: rows.length }, 'feed catch-up truncated')
            hub.catchUp(rows.map(toFetched))
          },
          (error: unknown) =>
            logger.warn({ err: error }, 'feed catch-up after a listener outage failed'),
        )
      },
    })
    let disconnectedAt: number | undefined
    // The stream registry and the metrics exist before the first notification can arrive.
    const registry = new StreamRegistry({ heartbeatMs: config.SSE_HEARTBEAT_MS })
    const metrics = createMetrics({
      hub,
      listener,
      registry,
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
      bridge = new RedisBridge({
        redisUrl: config.REDIS_URL,
        outbound: config.BRIDGE_OUTBOUND,
        inbound: config.BRIDGE_INBOUND,
        hub,
        db,
        logger: logger.child({ component: 'redis-bridge' }),
      })
      await bridge.start()
      const started = bridge
      cleanup.push(() => started.stop())
    }

    // 7. Workers: expired leases are reaped here too (a dead worker's job must not wait for
    //    another worker to come), and in development the demo worker runs `demo` jobs.
    if (config.LEASE_REAPER_INTERVAL_MS > 0) {
      const reaper = setInterval(() => {
        reapExpiredLeases(db).catch((error: unknown) =>
          logger.warn({ err: error }, 'reaping expired leases failed'),
        )
      }, config.LEASE_REAPER_INTERVAL_MS)
      reaper.unref()
      cleanup.push(async () => clearInterval(reaper))
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

    // 8. HTTP.
    const readiness = async (): Promise<ReadinessReport> => {
      const database = await sql`SELECT 1`.execute(db).then(
        () => 'ok' as const,
        () => 'failing' as const,
      )
      const listenerCheck = listener.isConnected ? ('ok' as const) : ('failing' as const)
      return {
        ready: database === 'ok' && listenerCheck === 'ok',
        checks: {
          database,
          listener: listenerCheck,
          ...(bridge
            ? { redis: bridge.status === 'ok' ? ('ok' as const) : ('degraded' as const) }
            : {}),
        },
      }
    }
    const streamDeps = {
      db,
      hub,
      registry,
      limits: {
        maxStreamsPerUser: config.MAX_STREAMS_PER_USER,
        maxStreamsPerTenant: config.MAX_STREAMS_PER_TENANT,
      },
    }
    const streamHooks = {
      onStreamBytes: metrics.streamBytes,
      onEventDelivered: metrics.eventDelivered,
      onCapRejected: metrics.capRejected,
    }
    // The multiplexed writers (SSE /v1/events, WebSocket) report one write per message;
    // heartbeats and pings go around it, so each write is one delivered event.
    const countMessage = (transport: 'sse' | 'ws', bytes: number) => {
      metrics.streamBytes(transport, bytes)
      metrics.eventDelivered(transport)
    }
    const rateLimits = createRateLimits(auth, { config, onRejected: metrics.rateLimitRejected })
    const app = createApp({
      rateLimits,
      config,
      logger,
      readiness,
      metrics,
      routers: [
        streamRoutes({ ...streamDeps, ...streamHooks, config }),
        multiplexedRoutes({
          ...streamDeps,
          config,
          onStreamBytes: countMessage,
          onCapRejected: metrics.capRejected,
        }),
        jobRoutes({ db, auth }),
        ...(config.livePage ? [livePageRouter({ path: config.LIVE_PAGE_PATH, devToken })] : []),
      ],
    })
    const server = createServer(app)
    const sockets = new Set<Socket>()
    server.on('connection', (socket: Socket) => {
      sockets.add(socket)
      socket.once('close', () => sockets.delete(socket))
    })
    const webSockets = attachWebSockets(server, {
      ...streamDeps,
      auth,
      logger,
      config,
      rateLimits,
      onWsBytes: (bytes) => countMessage('ws', bytes),
      onCapRejected: metrics.capRejected,
    })
    server.keepAliveTimeout = 65_000
    server.headersTimeout = 66_000

    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(config.PORT, config.HOST, () => {
        server.off('error', reject)
        resolve()
      })
    })
    const { port } = server.address() as AddressInfo
    const host = config.HOST === '0.0.0.0' || config.HOST === '::' ? '127.0.0.1' : config.HOST
    const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`
    logger.info({ url, embedded: config.isEmbeddedDatabase }, 'jobwire is listening')

    if (devToken) {
      const state = {
        dataDir: embedded?.dataDir,
        secretsFile: devSecretsFile(config.EMBEDDED_PG_DATA_DIR),
      }
      process.stdout.write(devBanner(url, devToken, config.livePage, state) + '\n')
    }

    let closing: Promise<void> | undefined
    const close = () =>
      (closing ??= (async () => {
        logger.info('shutting down')
        isStopping = true
        const timer = setTimeout(() => server.closeAllConnections(), config.SHUTDOWN_TIMEOUT_MS)
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()))
        // Streams end (clients resume elsewhere) and parked waiters get the current document.
        registry.closeAll()
        webSockets.close()
        // Idle keep-alive connections close now; so do connections that never sent a request
        // (browsers and undici open them ahead of time), which closeIdleConnections() skips.
        // Requests in flight finish, bounded by SHUTDOWN_TIMEOUT_MS.
        const sweep = setInterval(() => {
          server.closeIdleConnections()
          for (const socket of sockets) if (socket.bytesRead === 0) socket.destroy()
        }, 50)
        server.closeIdleConnections()
        await stopped
        clearInterval(sweep)
        clearTimeout(timer)
        await runCleanup()
        logger.info('stopped')
      })())

    return { url, server, db, databaseUrl, logger, hub, listener, registry, bridge, close }
  } catch (error) {
    await runCleanup()
    throw error
  }
}

async function assertServiceCanReadAllTenants(db: Db, logger: Logger): Promise<void> {
  const result = await sql<{ login: string; ok: boolean }>`
    SELECT current_user AS login,
           r.rolsuper OR r.rolbypassrls OR EXISTS (
             SELECT 1 FROM pg_policies p
             WHERE p.tablename = 'job_queue' AND p.policyname = 'job_queue_service'
               AND (current_user = ANY (p.roles) OR pg_has_role(current_user, p.roles[1], 'MEMBER'))
           ) AS ok
    FROM pg_roles r WHERE r.rolname = current_user`
    .execute(db)
    .catch((error: unknown) => {
      // The database is unreachable or refuses us: start anyway; /readyz says not ready.
      logger.warn(
        { err: error },
        'could not check the database login; /readyz reports the database',
      )
      return undefined
    })
  const row = result?.rows[0]
  if (row && !row.ok) {
    throw new Error(
      `the database login ${row.login} cannot read jobs across tenants for the event pipeline: ` +
        'run the migrations with this login, or add it to the job_queue_service policy (docs/decisions.md)',
    )
  }
}

/** Watch tokens get their own key, derived from JWT_SECRET when none is configured. */
function deriveWatchSecret(jwtSecret: string): string {
  return Buffer.from(hkdfSync('sha256', jwtSecret, 'jobwire', 'watch-token-v1', 32)).toString(
    'base64url',
  )
}
