// Owns the process's logical-replication stream (EVENT_SOURCE=replication; application_name
// `jobwire-replication`): every committed insert, update and delete of job_queue arrives
// through publication jobwire_job_queue, in commit order, as a whole row, and goes to the
// hub with no read. Same lifecycle as the Listener: start() resolves once the stream runs;
// the connection is retried for as long as it takes with capped exponential backoff and
// full jitter (delays up to 100, 200, 400, … 30000 ms); every (re)connect calls onConnected.
//
// The slot is TEMPORARY, one per connection (docs/decisions.md, "Event source"): PostgreSQL
// drops it when the session ends, crash included, so no instance can leave behind a slot
// that holds WAL. A new slot starts at the present: what committed while the stream was
// down is made up for by the re-read onConnected triggers, as after a LISTEN reconnect.
// After a reconnect the previous slot's walsender, when a half-open connection kept it
// alive, is terminated, rather than holding its WAL until wal_sender_timeout.
//
// A transaction's rows are applied when its Commit arrives, then its end LSN is confirmed
// (flush position): never a position the hub has not applied. Between transactions the
// server's keep-alive position is confirmed too, so an idle stream holds no WAL back.
//
// Decoding (src/events/replication-stream.ts) is pg-logical-replication's pgoutput parser, which turns every column with pg's
// own type parsers: a row from the stream becomes the same document as the row of a SELECT.
// Not its LogicalReplicationService: that opens its own connection inside subscribe(), where
// a temporary slot cannot be created first; it acknowledges a message when it arrives
// (auto), or the last *received* position on a timer, not the applied one; and it does not
// reconnect.
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { ReconnectSchedule } from './reconnect-schedule.js'
import { PgoutputPlugin } from 'pg-logical-replication'
import { PUBLICATION } from '../db/replication-checks.js'
import type { Logger } from '../telemetry/logger.js'
import type { FetchedJob } from './hub.js'
import type { JobNotification } from './notification.js'
import { ReplicationStats, StreamDecoder } from './replication-stream.js'

export { ReplicationStats }

export const REPLICATION_APPLICATION_NAME = 'jobwire-replication'

export interface ReplicationSourceOptions {
  connectionString: string
  logger: Logger
  reconnectMinMs: number
  reconnectMaxMs: number
  /** How often the stream is asked for a reply (ms); no reply by the next ask reconnects. */
  pingIntervalMs?: number
  /** A committed row, whole; undefined when it was deleted. `ts`: commit time, epoch ms. */
  onRow(jobId: string, row: FetchedJob | undefined, ts: number): void
  /** A row the stream could not carry whole (an unchanged TOASTed column): read it instead. */
  onNotification(notification: JobNotification): void
  onConnected(info: { isReconnect: boolean }): void
  onDisconnected?(error: unknown): void
  /**
   * The NOTIFY switch (src/db/notify-switch.ts): update() once the stream runs and then every
   * intervalMs (default 5000); release() on stop, before the stream's session ends.
   */
  notifySwitch?: {
    update(): Promise<unknown>
    release(ownPid: number | undefined): Promise<void>
    intervalMs?: number
  }
}

/** pg's connection object, which carries the COPY BOTH stream (not in @types/pg). */
interface CopyBothConnection {
  on(event: 'copyData', listener: (message: { chunk: Buffer }) => void): void
  once(event: 'replicationStart', listener: () => void): void
  sendCopyFromChunk(chunk: Buffer): void
}

export class ReplicationSource {
  readonly stats = new ReplicationStats()
  private client: pg.Client | undefined
  private isStopped = false
  private isConnectedNow = false
  private readonly schedule: ReconnectSchedule
  private hasConnectedBefore = false
  private pingTimer: NodeJS.Timeout | undefined
  private firstConnect: { promise: Promise<void>; resolve: () => void }
  private previousSlot: string | undefined
  private switchTimer: NodeJS.Timeout | undefined
  reconnects = 0
  /** The walsender's pid (pg_terminate_backend on it is a source outage). */
  backendPid: number | undefined
  slotName: string | undefined

  constructor(private readonly options: ReplicationSourceOptions) {
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

  /** Starts connecting; resolves once the first stream runs (retrying until then). */
  start(): Promise<void> {
    void this.connect()
    return this.firstConnect.promise
  }

  /** Something else saw the database answer: try now rather than after the backoff. */
  retryNow(): void {
    if (!this.isStopped) this.schedule.retryNow()
  }

  async stop(): Promise<void> {
    this.isStopped = true
    this.schedule.stop()
    clearInterval(this.pingTimer)
    clearInterval(this.switchTimer)
    this.firstConnect.resolve()
    await this.options.notifySwitch
      ?.release(this.backendPid)
      .catch((error: unknown) =>
        this.options.logger.warn({ err: error }, 'could not hand the NOTIFY switch back'),
      )
    const client = this.client
    this.client = undefined
    this.isConnectedNow = false
    // Ending the session drops its temporary slot.
    if (client) await client.end().catch(() => undefined)
  }

  private async connect(): Promise<void> {
    if (this.isStopped) return
    this.schedule.started()
    const client = new pg.Client({
      connectionString: this.options.connectionString,
      application_name: REPLICATION_APPLICATION_NAME,
      keepAlive: true,
      connectionTimeoutMillis: 10_000,
      replication: 'database',
    } as pg.ClientConfig)
    let failed = false
    const onFailure = (error: unknown) => {
      if (failed) return
      failed = true
      this.handleFailure(client, error)
    }
    client.on('error', onFailure)
    client.on('end', () => onFailure(new Error('replication connection ended')))
    const slot = `jobwire_${randomBytes(8).toString('hex')}`
    try {
      await client.connect()
      const pid = await boundedQuery<{ pid: number }>(client, 'SELECT pg_backend_pid() AS pid')
      if (this.previousSlot) await this.endPreviousSlot(client, this.previousSlot)
      // Waits until the transactions running now have finished (a consistent start).
      const created = await client.query<{ consistent_point: string }>(
        `CREATE_REPLICATION_SLOT ${slot} TEMPORARY LOGICAL pgoutput NOEXPORT_SNAPSHOT`,
      )
      const start = created.rows[0]!.consistent_point
      if (failed || this.isStopped) {
        await client.end().catch(() => undefined)
        return
      }
      const connection = (client as unknown as { connection: CopyBothConnection }).connection
      const plugin = new PgoutputPlugin({ protoVersion: 1, publicationNames: [PUBLICATION] })
      const stream = new StreamDecoder(plugin, this.stats, {
        rows: (rows, ts) => {
          for (const [id, row] of rows) this.options.onRow(id, row, ts)
        },
        incomplete: (notification) => this.options.onNotification(notification),
        send: (status) => connection.sendCopyFromChunk(status),
      })
      connection.on('copyData', ({ chunk }) => {
        try {
          stream.receive(chunk)
        } catch (error) {
          onFailure(error)
        }
      })
      connection.once('replicationStart', () => {
        if (failed || this.isStopped) return
        this.client = client
        this.backendPid = pid.rows[0]?.pid
        this.slotName = slot
        this.previousSlot = slot
        this.isConnectedNow = true
        this.schedule.succeeded()
        const isReconnect = this.hasConnectedBefore
        this.hasConnectedBefore = true
        if (isReconnect) this.reconnects++
        this.options.logger.info(
          { pid: this.backendPid, slot, start, isReconnect },
          'replication stream started',
        )
        this.startPing(client, stream)
        this.startSwitch()
        this.firstConnect.resolve()
        this.options.onConnected({ isReconnect })
      })
      // Resolves only when the stream ends; a server error rejects it.
      plugin.start(client, slot, start).then(
        () => onFailure(new Error('replication stream ended')),
        (error: unknown) => onFailure(error),
      )
    } catch (error) {
      onFailure(error)
    }
  }

  /**
   * A half-open connection leaves its walsender, and the temporary slot with it, alive until
   * wal_sender_timeout: end it now. The random slot name makes this exact.
   */
  private async endPreviousSlot(client: pg.Client, slot: string): Promise<void> {
    // The name is ours (jobwire_ and hex digits): safe inside the literal. A replication
    // connection takes simple queries only, so no parameters.
    const { rows } = await boundedQuery(
      client,
      `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
        WHERE slot_name = '${slot}' AND active_pid IS NOT NULL`,
    )
    if (rows.length > 0) this.options.logger.info({ slot }, 'ended the previous replication slot')
    this.previousSlot = undefined
  }

  private handleFailure(client: pg.Client, error: unknown): void {
    client.on('error', () => undefined) // a late error from a dead client must not crash us
    void client.end().catch(() => undefined)
    if (this.client === client) this.client = undefined
    clearInterval(this.pingTimer)
    const wasConnected = this.isConnectedNow
    this.isConnectedNow = false
    if (this.isStopped) return
    if (wasConnected) {
      this.options.logger.warn({ err: error }, 'replication stream lost; reconnecting')
      this.options.onDisconnected?.(error)
    }
    const delay = this.schedule.failed()
    if (!wasConnected) {
      // A setting or a privilege missing since start-up repeats on every attempt: say it.
      const failures = this.schedule.failures
      const level = failures === 1 || failures % 10 === 0 ? 'warn' : 'debug'
      this.options.logger[level]({ err: error, delay }, 'replication connect failed; retrying')
    }
  }

  private startSwitch(): void {
    const notifySwitch = this.options.notifySwitch
    if (!notifySwitch || this.switchTimer) return
    const update = () =>
      void notifySwitch
        .update()
        .catch((error: unknown) =>
          this.options.logger.warn({ err: error }, 'updating the NOTIFY switch failed'),
        )
    update()
    this.switchTimer = setInterval(update, notifySwitch.intervalMs ?? 5000)
    this.switchTimer.unref()
  }

  private startPing(client: pg.Client, stream: StreamDecoder): void {
    const interval = this.options.pingIntervalMs ?? 15_000
    clearInterval(this.pingTimer)
    let receivedAtLastPing = stream.messages
    this.pingTimer = setInterval(() => {
      // A half-open TCP connection only shows when we write and nothing comes back.
      if (stream.messages === receivedAtLastPing) {
        client.emit('error', new Error('replication stream: no reply to the last status update'))
        return
      }
      receivedAtLastPing = stream.messages
      stream.sendStatus(true)
    }, interval)
    this.pingTimer.unref()
    stream.sendStatus(true)
  }
}

/**
 * A short query that must not hang on a connection that stalled after the handshake
 * (pg reads query_timeout per query; @types/pg does not list it).
 */
function boundedQuery<R extends pg.QueryResultRow = pg.QueryResultRow>(
  client: pg.Client,
  text: string,
): Promise<pg.QueryResult<R>> {
  return client.query<R>({ text, query_timeout: 10_000 } as pg.QueryConfig)
}
