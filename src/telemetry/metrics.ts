// Prometheus metrics (prom-client), one registry per service. What it promises:
//   * the hot path pays for one addition: a delivered event or written chunk adds to a plain
//     number per transport, which the counters read at scrape time in collect(), as every
//     gauge (open streams, watched jobs, listener state) and every counter the hub already
//     keeps (notifications, batched reads) is;
//   * label values are bounded: transport is one of three, and the per-tenant breakdown of
//     open streams (off by default) is the top N tenants plus "other";
//   * every jobwire metric starts with `jobwire_`. The default process metrics keep their
//     standard names (process_*, nodejs_*) so that stock dashboards find them.
// The sources are passed in as small structural interfaces: telemetry sits below events and
// transports in the import order, so it never imports them.
import {
  collectDefaultMetrics,
  Counter,
  Gauge,
  Histogram,
  Registry,
  type CounterConfiguration,
} from 'prom-client'

export const TRANSPORTS = ['sse', 'ws', 'longpoll'] as const
export type Transport = (typeof TRANSPORTS)[number]

export const RATE_LIMIT_KINDS = ['user', 'tenant', 'watch', 'ip'] as const
export type RateLimitKind = (typeof RATE_LIMIT_KINDS)[number]

/** Commit-to-delivery latency buckets (ms): sub-millisecond LAN up to a stalled pipeline. */
export const LATENCY_BUCKETS_MS = [0.5, 1, 2, 5, 10, 20, 50, 100, 250, 500, 1000, 5000]

/** What the metrics read from the hub at scrape time (src/events/hub.ts fits it). */
export interface HubSource {
  readonly watchedJobs: number
  readonly watcherCount: number
  readonly feedCount: number
  readonly stats: {
    readonly notifications: number
    readonly malformed: number
    readonly fetches: number
    readonly fetchedRows: number
    readonly fetchErrors: number
    readonly fetchMs: number
    readonly built: number
  }
}

/** src/events/listener.ts fits it. */
export interface ListenerSource {
  readonly isConnected: boolean
  readonly reconnects: number
}

/** The replication stream's counters (src/events/replication-source.ts ReplicationStats). */
export interface ReplicationStatsSource {
  readonly rows: number
  readonly transactions: number
  readonly incompleteRows: number
  readonly serverLsn: bigint
  readonly confirmedLsn: bigint
}

/** The shared limits' Redis connection (src/http/redis-link.ts RedisLink fits it). */
export interface LimitsSource {
  readonly isReady: boolean
  readonly fallbacks: { readonly rateLimit: number; readonly streamSlots: number }
}

/** src/transports/stream-registry.ts fits it. */
export interface StreamSource {
  countByKind(kind: Transport): number
}

export interface MetricsOptions {
  hub: HubSource
  listener: ListenerSource
  /** With EVENT_SOURCE=replication: the stream's counters. */
  replication?: ReplicationStatsSource
  registry: StreamSource
  /** With LIMITS_STORE=redis: the connection the limits are shared through. */
  limits?: LimitsSource
  /** Break open streams down by tenant (METRICS_TENANT_LABEL). */
  tenantLabel: boolean
  /** How many tenants get their own label value per transport; the rest are "other". */
  tenantTopN?: number
}

export interface Metrics {
  readonly registry: Registry
  readonly contentType: string
  /** The exposition text. */
  metrics(): Promise<string>
  /** The stream registry's onChange hook. */
  streamChanged(transport: Transport, tenantId: string, delta: 1 | -1): void
  streamBytes(transport: Transport, bytes: number): void
  eventDelivered(transport: Transport): void
  /** The hub's onLatency hook: commit (trigger clock) to the change reaching the streams. */
  latencyMs(ms: number): void
  rateLimitRejected(kind: RateLimitKind): void
  capRejected(): void
}

const OTHER_TENANTS = 'other'

export function createMetrics(options: MetricsOptions): Metrics {
  const { hub, listener, registry: streams, tenantLabel } = options
  const tenantTopN = options.tenantTopN ?? 10
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })

  // Open streams per transport and tenant, kept from the registry's open/close hook (a
  // stream opening or closing is rare next to events). Only used with tenantLabel.
  const byTenant = new Map<Transport, Map<string, number>>(TRANSPORTS.map((t) => [t, new Map()]))

  new Gauge({
    name: 'jobwire_open_streams',
    help: 'Open SSE streams, WebSockets and parked long-polls, by transport',
    labelNames: tenantLabel ? ['transport', 'tenant'] : ['transport'],
    registers: [registry],
    collect() {
      this.reset()
      for (const transport of TRANSPORTS) {
        if (!tenantLabel) {
          this.set({ transport }, streams.countByKind(transport))
          continue
        }
        // Cardinality: a Prometheus series per tenant would grow without bound with a
        // multi-tenant customer base (and every series costs memory in Prometheus for its
        // retention). The N busiest tenants per transport get their own series; the rest are
        // summed into "other", so this gauge never has more than 3 × (N + 1) series and
        // sum by (transport) stays exact.
        const ranked = [...byTenant.get(transport)!].sort((a, b) => b[1] - a[1])
        let other = 0
        ranked.forEach(([tenant, count], index) => {
          if (index < tenantTopN) this.set({ transport, tenant }, count)
          else other += count
        })
        this.set({ transport, tenant: OTHER_TENANTS }, other)
      }
    },
  })
  const streamsOpened = new Counter({
    name: 'jobwire_streams_opened_total',
    help: 'Streams opened (SSE, WebSocket, parked long-poll), by transport',
    labelNames: ['transport'],
    registers: [registry],
  })

  new Gauge({
    name: 'jobwire_hub_watched_jobs',
    help: 'Jobs with at least one watcher in this process',
    registers: [registry],
    collect() {
      this.set(hub.watchedJobs)
    },
  })
  new Gauge({
    name: 'jobwire_hub_watchers',
    help: 'Single-job watchers (streams, long-polls, WebSocket subscriptions)',
    registers: [registry],
    collect() {
      this.set(hub.watcherCount)
    },
  })
  new Gauge({
    name: 'jobwire_hub_feed_watchers',
    help: 'Tenant-feed subscribers',
    registers: [registry],
    collect() {
      this.set(hub.feedCount)
    },
  })
  new Gauge({
    name: 'jobwire_listener_connected',
    help: '1 while the LISTEN connection is up, 0 while it reconnects',
    registers: [registry],
    collect() {
      this.set(listener.isConnected ? 1 : 0)
    },
  })

  const snapshotCounter = (config: CounterConfiguration<string>, read: () => number) =>
    new Counter({
      ...config,
      registers: [registry],
      collect() {
        this.reset()
        this.inc(read())
      },
    })
  snapshotCounter(
    { name: 'jobwire_listener_reconnects_total', help: 'LISTEN connection re-established' },
    () => listener.reconnects,
  )
  snapshotCounter(
    {
      name: 'jobwire_listener_notifications_total',
      help: 'Job notifications received (malformed ones included)',
    },
    () => hub.stats.notifications + hub.stats.malformed,
  )
  snapshotCounter(
    {
      name: 'jobwire_listener_malformed_notifications_total',
      help: 'Notifications whose payload could not be parsed (ignored)',
    },
    () => hub.stats.malformed,
  )
  // Batch size and duration as counters: rate(rows) / rate(reads) is the mean batch size,
  // rate(seconds) / rate(reads) the mean read time, without a per-read histogram.
  snapshotCounter(
    { name: 'jobwire_hub_batch_reads_total', help: 'Batched reads of changed jobs' },
    () => hub.stats.fetches,
  )
  snapshotCounter(
    { name: 'jobwire_hub_batch_read_rows_total', help: 'Rows returned by batched reads' },
    () => hub.stats.fetchedRows,
  )
  snapshotCounter(
    { name: 'jobwire_hub_batch_read_errors_total', help: 'Batched reads that failed (retried)' },
    () => hub.stats.fetchErrors,
  )
  snapshotCounter(
    {
      name: 'jobwire_hub_batch_read_seconds_total',
      help: 'Time spent in batched reads',
    },
    () => hub.stats.fetchMs / 1000,
  )
  snapshotCounter(
    {
      name: 'jobwire_hub_changes_built_total',
      help: 'Changes built from the notification itself, without reading the row',
    },
    () => hub.stats.built,
  )

  const replication = options.replication
  if (replication) {
    snapshotCounter(
      {
        name: 'jobwire_replication_rows_total',
        help: 'Rows received from the replication stream (inserts, updates, deletes)',
      },
      () => replication.rows,
    )
    snapshotCounter(
      {
        name: 'jobwire_replication_transactions_total',
        help: 'Committed transactions received from the replication stream',
      },
      () => replication.transactions,
    )
    snapshotCounter(
      {
        name: 'jobwire_replication_incomplete_rows_total',
        help: 'Streamed rows without an unchanged large (TOASTed) column, read instead',
      },
      () => replication.incompleteRows,
    )
    new Gauge({
      name: 'jobwire_replication_lag_bytes',
      help: 'WAL between the server position last reported and the position confirmed (applied)',
      registers: [registry],
      collect() {
        const lag = replication.serverLsn - replication.confirmedLsn
        this.set(replication.confirmedLsn > 0n && lag > 0n ? Number(lag) : 0)
      },
    })
  }

  const limits = options.limits
  if (limits) {
    new Gauge({
      name: 'jobwire_limits_redis_connected',
      help: '1 while the rate limits and stream caps are shared through Redis, 0 while they count in this process',
      registers: [registry],
      collect() {
        this.set(limits.isReady ? 1 : 0)
      },
    })
    new Counter({
      name: 'jobwire_limits_fallbacks_total',
      help: 'Rate-limit and stream-cap checks made in this process because Redis did not answer, by store',
      labelNames: ['store'],
      registers: [registry],
      collect() {
        this.reset()
        this.inc({ store: 'rate_limit' }, limits.fallbacks.rateLimit)
        this.inc({ store: 'stream_slots' }, limits.fallbacks.streamSlots)
      },
    })
  }

  const latency = new Histogram({
    name: 'jobwire_commit_to_delivery_milliseconds',
    help: 'From the commit (the NOTIFY trigger clock, or the commit time from replication) to the change being written to streams',
    buckets: LATENCY_BUCKETS_MS,
    registers: [registry],
  })
  // Per socket write: plain sums here, labelled series only at scrape time.
  const deliveredEvents: Record<Transport, number> = { sse: 0, ws: 0, longpoll: 0 }
  const writtenBytes: Record<Transport, number> = { sse: 0, ws: 0, longpoll: 0 }
  const perTransportCounter = (config: CounterConfiguration<string>, sums: typeof writtenBytes) =>
    new Counter({
      ...config,
      labelNames: ['transport'],
      registers: [registry],
      collect() {
        this.reset()
        for (const transport of TRANSPORTS) this.inc({ transport }, sums[transport])
      },
    })
  perTransportCounter(
    {
      name: 'jobwire_events_delivered_total',
      help: 'Job events written to clients (snapshots, patches, end, long-poll answers)',
    },
    deliveredEvents,
  )
  perTransportCounter(
    {
      name: 'jobwire_stream_bytes_total',
      help: 'Bytes written to streams, heartbeats included',
    },
    writtenBytes,
  )
  const rateLimited = new Counter({
    name: 'jobwire_rate_limit_rejections_total',
    help: 'Requests answered 429 by a rate limit, by limit',
    labelNames: ['kind'],
    registers: [registry],
  })
  const capRejected = new Counter({
    name: 'jobwire_stream_cap_rejections_total',
    help: 'Streams refused because the user or tenant already had its maximum open',
    registers: [registry],
  })
  // Zero series exist from the start, so rate() and absent() work before the first event.
  for (const transport of TRANSPORTS) streamsOpened.inc({ transport }, 0)
  for (const kind of RATE_LIMIT_KINDS) rateLimited.inc({ kind }, 0)

  return {
    registry,
    contentType: registry.contentType,
    metrics: () => registry.metrics(),
    streamChanged(transport, tenantId, delta) {
      if (delta > 0) streamsOpened.inc({ transport })
      if (!tenantLabel) return
      const counts = byTenant.get(transport)!
      const next = (counts.get(tenantId) ?? 0) + delta
      if (next <= 0) counts.delete(tenantId)
      else counts.set(tenantId, next)
    },
    streamBytes: (transport, n) => {
      writtenBytes[transport] += n
    },
    eventDelivered: (transport) => {
      deliveredEvents[transport]++
    },
    latencyMs: (ms) => latency.observe(Math.max(0, ms)),
    rateLimitRejected: (kind) => rateLimited.inc({ kind }),
    capRejected: () => capRejected.inc(),
  }
}
