// Owns the process's one LISTEN connection (application_name `jobwire-listener`). A NOTIFY
// is a hint that a job changed; the hub re-reads the row. The connection is retried for as
// long as it takes, also at start-up, on src/events/reconnect-schedule.ts: the first retry
// after LISTENER_RECONNECT_MIN_MS, then full-jitter delays up to 200, 400, 800, 1600, then
// 2000 ms with the defaults, so the listener is back at most LISTENER_RECONNECT_MAX_MS
// after the database is; retryNow() cuts a wait short when something else has just seen
// the database answer.
// Every (re)connect calls onConnected so the hub re-reads what it watches: notifications
// sent while no one listened are lost by PostgreSQL, the re-read is what makes up for them.
//
// Why not pg-listen (named in the design): by default it gives up for good after a 3 s
// outage; configured to retry forever it still gives up for good if the connection drops
// between reconnect and LISTEN, it does not retry the first connect, and it is unmaintained.
// test/integration/pg-listen-gives-up.test.ts shows the first failure.
import pg from 'pg'
import type { Logger } from '../telemetry/logger.js'
import { CHANNEL } from './notification.js'
import { ReconnectSchedule } from './reconnect-schedule.js'

export interface ListenerOptions {
  connectionString: string
  logger: Logger
  reconnectMinMs: number
  reconnectMaxMs: number
  /** How often the idle connection is checked with a query (ms); a failed check reconnects. */
  pingIntervalMs?: number
  /** Runs on the connection after LISTEN, before onConnected (the NOTIFY switch: it goes on). */
  afterListen?(client: pg.Client): Promise<void>
  onNotification(payload: string | undefined): void
  onConnected(info: { isReconnect: boolean }): void
  onDisconnected?(error: unknown): void
}

export class Listener {
  private client: pg.Client | undefined
  private isStopped = false
  private isConnectedNow = false
  private readonly schedule: ReconnectSchedule
  private hasConnectedBefore = false
  private pingTimer: NodeJS.Timeout | undefined
  private firstConnect: { promise: Promise<void>; resolve: () => void }
  reconnects = 0
  backendPid: number | undefined

  constructor(private readonly options: ListenerOptions) {
    let resolve!: () => void
    const promise = new Promise<void>((r) => (resolve = r))
    this.firstConnect = { promise, resolve }
    this.schedule = new ReconnectSchedule({
      minMs: options.reconnectMinMs,
      maxMs: options.reconnectMaxMs,
      connect: () => void this.connect(),
    })
  }

  get isConnected(): boolean {
    return this.isConnectedNow
  }

  /** Starts connecting; resolves once the first LISTEN is in place (retrying until then). */
  start(): Promise<void> {
    void this.connect()
    return this.firstConnect.promise
  }

  /**
   * A hint that the database answers again: while waiting to retry, try at once instead (at
   * most once a second; nothing happens while connected or connecting). A failed early
   * attempt goes back to the backoff where it was.
   */
  /** Something else saw the database answer: try now rather than after the backoff. */
  retryNow(): void {
    if (!this.isStopped) this.schedule.retryNow()
  }

  async stop(): Promise<void> {
    this.isStopped = true
    this.schedule.stop()
    clearInterval(this.pingTimer)
    this.firstConnect.resolve()
    const client = this.client
    this.client = undefined
    this.isConnectedNow = false
    if (client) await client.end().catch(() => undefined)
  }

  private async connect(): Promise<void> {
    if (this.isStopped) return
    this.schedule.started()
    const client = new pg.Client({
      connectionString: this.options.connectionString,
      application_name: 'jobwire-listener',
      keepAlive: true,
      connectionTimeoutMillis: 10_000,
      // A connection that stalls after the handshake must not leave LISTEN pending forever.
      query_timeout: 10_000,
    })
    let failed = false
    const onFailure = (error: unknown) => {
      if (failed) return
      failed = true
      this.handleFailure(client, error)
    }
    client.on('error', onFailure)
    client.on('end', () => onFailure(new Error('listener connection ended')))
    client.on('notification', (message) => {
      if (message.channel === CHANNEL) this.options.onNotification(message.payload)
    })
    try {
      await client.connect()
      await client.query(`LISTEN ${CHANNEL}`)
      await this.options.afterListen?.(client)
      const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')
      if (failed || this.isStopped) {
        await client.end().catch(() => undefined)
        return
      }
      this.client = client
      this.backendPid = rows[0]?.pid
      this.isConnectedNow = true
      this.schedule.succeeded()
      const isReconnect = this.hasConnectedBefore
      this.hasConnectedBefore = true
      if (isReconnect) this.reconnects++
      this.options.logger.info({ pid: this.backendPid, isReconnect }, 'listener connected')
      this.startPing(client)
      this.firstConnect.resolve()
      this.options.onConnected({ isReconnect })
    } catch (error) {
      onFailure(error)
    }
  }

  private handleFailure(client: pg.Client, error: unknown): void {
    client.removeAllListeners('notification')
    client.on('error', () => undefined) // a late error from a dead client must not crash us
    void client.end().catch(() => undefined)
    if (this.client === client) this.client = undefined
    clearInterval(this.pingTimer)
    const wasConnected = this.isConnectedNow
    this.isConnectedNow = false
    if (this.isStopped) return
    if (wasConnected) {
      this.options.logger.warn({ err: error }, 'listener connection lost; reconnecting')
      this.options.onDisconnected?.(error)
    }
    const delay = this.schedule.failed()
    if (!wasConnected)
      this.options.logger.debug({ err: error, delay }, 'listener connect failed; retrying')
  }

  private startPing(client: pg.Client): void {
    const interval = this.options.pingIntervalMs ?? 15_000
    clearInterval(this.pingTimer)
    this.pingTimer = setInterval(() => {
      // A half-open TCP connection (peer gone without FIN) only shows when we write.
      const timeout = setTimeout(
        () => client.emit('error', new Error('listener ping timed out')),
        interval,
      )
      client.query('SELECT 1').then(
        () => clearTimeout(timeout),
        (error: unknown) => {
          clearTimeout(timeout)
          client.emit('error', error)
        },
      )
    }, interval)
    this.pingTimer.unref()
  }
}
