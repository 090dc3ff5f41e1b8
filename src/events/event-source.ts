// The one event source of an instance (EVENT_SOURCE, docs/production.md "Past the NOTIFY
// ceiling"): the LISTEN connection, whose payloads the hub reads rows for, or the logical
// replication stream, which hands it whole rows. Either one reconnects by itself and reports
// its outages, so the outage catch-up can replay what changed in the gap.
import type { Config } from '../config/index.js'
import { releaseNotifySwitch, turnNotifyOn, updateNotifySwitch } from '../db/notify-switch.js'
import type { Db } from '../db/pool.js'
import { assertReplicationReady } from '../db/replication-checks.js'
import type { Logger } from '../telemetry/logger.js'
import type { Hub } from './hub.js'
import { Listener } from './listener.js'
import type { OutageCatchUp } from './outage-catch-up.js'
import { REPLICATION_APPLICATION_NAME, ReplicationSource } from './replication-source.js'

export type EventSource = Listener | ReplicationSource

export interface EventSourceOptions {
  config: Readonly<Config>
  /** The session URL (LISTEN and replication cannot go through a transaction pooler). */
  connectionString: string
  db: Db
  hub: Hub
  catchUp: OutageCatchUp
  logger: Logger
}

/** Builds the configured source (not started); replication is checked for first. */
export async function createEventSource(options: EventSourceOptions): Promise<EventSource> {
  const { config, db, hub, catchUp, logger } = options
  const common = {
    connectionString: options.connectionString,
    reconnectMinMs: config.LISTENER_RECONNECT_MIN_MS,
    reconnectMaxMs: config.LISTENER_RECONNECT_MAX_MS,
    onDisconnected: () => catchUp.disconnected(),
    onConnected: ({ isReconnect }: { isReconnect: boolean }) => {
      if (isReconnect) catchUp.reconnected()
    },
  }
  if (config.EVENT_SOURCE === 'replication') {
    await assertReplicationReady(common.connectionString, logger)
    return new ReplicationSource({
      ...common,
      logger: logger.child({ component: 'replication' }),
      onRow: (id, row, ts) => hub.handleRow(id, row, { ts }),
      onNotification: (notification) => hub.handleNotification(notification),
      notifySwitch: {
        update: () => updateNotifySwitch(db),
        release: (pid) => releaseNotifySwitch(db, REPLICATION_APPLICATION_NAME, pid),
      },
    })
  }
  return new Listener({
    ...common,
    logger: logger.child({ component: 'listener' }),
    onNotification: (payload) => hub.handlePayload(payload),
    afterListen: async (client) => {
      if ((await turnNotifyOn(client)) === 'not-permitted')
        logger.warn(
          'this login may not turn NOTIFY on (UPDATE on jobwire_event_source); replicating instances will within 5 s',
        )
    },
  })
}
