import { createMetrics } from '../../src/telemetry/metrics.js'
import { parseExposition, sampleValue } from '../helpers/metrics.js'

function fakeHub() {
  return {
    watchedJobs: 3,
    watcherCount: 5,
    feedCount: 1,
    stats: {
      notifications: 7,
      malformed: 2,
      fetches: 4,
      fetchedRows: 9,
      fetchErrors: 1,
      fetchMs: 1500,
      built: 6,
    },
  }
}

const noStreams = { countByKind: () => 0 }

it('reads hub and listener state at scrape time', async () => {
  const hub = fakeHub()
  const listener = { isConnected: false, reconnects: 3 }
  const metrics = createMetrics({ hub, listener, registry: noStreams, tenantLabel: false })
  let samples = parseExposition(await metrics.metrics())
  expect(sampleValue(samples, 'jobwire_hub_watched_jobs')).toBe(3)
  expect(sampleValue(samples, 'jobwire_hub_watchers')).toBe(5)
  expect(sampleValue(samples, 'jobwire_listener_connected')).toBe(0)
  expect(sampleValue(samples, 'jobwire_listener_reconnects_total')).toBe(3)
  expect(sampleValue(samples, 'jobwire_hub_changes_built_total')).toBe(6)
  expect(sampleValue(samples, 'jobwire_listener_notifications_total')).toBe(9)
  expect(sampleValue(samples, 'jobwire_listener_malformed_notifications_total')).toBe(2)
  expect(sampleValue(samples, 'jobwire_hub_batch_read_seconds_total')).toBe(1.5)

  hub.stats.notifications = 10
  listener.isConnected = true
  samples = parseExposition(await metrics.metrics())
  expect(sampleValue(samples, 'jobwire_listener_notifications_total')).toBe(12)
  expect(sampleValue(samples, 'jobwire_listener_connected')).toBe(1)
})

it('reads the replication stream at scrape time, only when there is one', async () => {
  const replication = {
    rows: 12,
    transactions: 10,
    incompleteRows: 1,
    serverLsn: 0x1_0000_2000n,
    confirmedLsn: 0x1_0000_1000n,
  }
  const listener = { isConnected: true, reconnects: 0 }
  const metrics = createMetrics({
    hub: fakeHub(),
    listener,
    replication,
    registry: noStreams,
    tenantLabel: false,
  })
  let samples = parseExposition(await metrics.metrics())
  expect(sampleValue(samples, 'jobwire_replication_rows_total')).toBe(12)
  expect(sampleValue(samples, 'jobwire_replication_transactions_total')).toBe(10)
  expect(sampleValue(samples, 'jobwire_replication_incomplete_rows_total')).toBe(1)
  expect(sampleValue(samples, 'jobwire_replication_lag_bytes')).toBe(0x1000)
  replication.confirmedLsn = replication.serverLsn
  samples = parseExposition(await metrics.metrics())
  expect(sampleValue(samples, 'jobwire_replication_lag_bytes')).toBe(0)

  const notify = createMetrics({
    hub: fakeHub(),
    listener,
    registry: noStreams,
    tenantLabel: false,
  })
  expect(
    parseExposition(await notify.metrics()).some((s) => s.name.startsWith('jobwire_replication')),
  ).toBe(false)
})

it('keeps the busiest N tenants per transport and sums the rest into "other"', async () => {
  const metrics = createMetrics({
    hub: fakeHub(),
    listener: { isConnected: true, reconnects: 0 },
    registry: noStreams,
    tenantLabel: true,
    tenantTopN: 2,
  })
  const open = (tenant: string, n: number) => {
    for (let i = 0; i < n; i++) metrics.streamChanged('sse', tenant, 1)
  }
  open('a', 5)
  open('b', 3)
  open('c', 2)
  open('d', 1)
  metrics.streamChanged('sse', 'a', -1)
  const samples = parseExposition(await metrics.metrics())
  const sse = samples.filter(
    (s) => s.name === 'jobwire_open_streams' && s.labels.transport === 'sse',
  )
  expect(Object.fromEntries(sse.map((s) => [s.labels.tenant, s.value]))).toEqual({
    a: 4,
    b: 3,
    other: 3,
  })
  expect(sampleValue(samples, 'jobwire_open_streams', { transport: 'ws', tenant: 'other' })).toBe(0)
  expect(sampleValue(samples, 'jobwire_streams_opened_total', { transport: 'sse' })).toBe(11)
})

it('labels open streams by transport only when the tenant label is off', async () => {
  const metrics = createMetrics({
    hub: fakeHub(),
    listener: { isConnected: true, reconnects: 0 },
    registry: { countByKind: (kind) => (kind === 'ws' ? 2 : 0) },
    tenantLabel: false,
  })
  metrics.streamChanged('ws', 'a', 1)
  const samples = parseExposition(await metrics.metrics())
  expect(sampleValue(samples, 'jobwire_open_streams', { transport: 'ws' })).toBe(2)
  expect(samples.some((s) => s.labels.tenant !== undefined)).toBe(false)
})

it('puts latencies in millisecond buckets', async () => {
  const metrics = createMetrics({
    hub: fakeHub(),
    listener: { isConnected: true, reconnects: 0 },
    registry: noStreams,
    tenantLabel: false,
  })
  metrics.latencyMs(0.3)
  metrics.latencyMs(7)
  metrics.latencyMs(-2) // a writer clock ahead of ours counts as 0
  const samples = parseExposition(await metrics.metrics())
  const bucket = (le: string) =>
    sampleValue(samples, 'jobwire_commit_to_delivery_milliseconds_bucket', { le })
  expect(bucket('0.5')).toBe(2)
  expect(bucket('5')).toBe(2)
  expect(bucket('10')).toBe(3)
  expect(bucket('+Inf')).toBe(3)
})

it('sums bytes and events per transport and reports the totals at every scrape', async () => {
  const metrics = createMetrics({
    hub: fakeHub(),
    listener: { isConnected: true, reconnects: 0 },
    registry: noStreams,
    tenantLabel: false,
  })
  let samples = parseExposition(await metrics.metrics())
  expect(sampleValue(samples, 'jobwire_stream_bytes_total', { transport: 'ws' })).toBe(0)
  expect(sampleValue(samples, 'jobwire_events_delivered_total', { transport: 'sse' })).toBe(0)
  metrics.streamBytes('ws', 100)
  metrics.streamBytes('ws', 20)
  metrics.streamBytes('sse', 5)
  metrics.eventDelivered('longpoll')
  metrics.eventDelivered('longpoll')
  for (let scrape = 0; scrape < 2; scrape++) {
    samples = parseExposition(await metrics.metrics())
    const bytes = (transport: string) =>
      sampleValue(samples, 'jobwire_stream_bytes_total', { transport })
    const events = (transport: string) =>
      sampleValue(samples, 'jobwire_events_delivered_total', { transport })
    expect([bytes('sse'), bytes('ws'), bytes('longpoll')]).toEqual([5, 120, 0])
    expect([events('sse'), events('ws'), events('longpoll')]).toEqual([0, 0, 2])
  }
})
