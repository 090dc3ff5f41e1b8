// One replication stream's decoding: pgoutput messages (parsed by pg-logical-replication's
// parser, values through pg's own type parsers) → the rows of each committed transaction,
// the positions, and the standby status updates that confirm what was applied. The
// connection around it is src/events/replication-source.ts.
import type { PgoutputPlugin } from 'pg-logical-replication'
import { JOB_DOCUMENT_COLUMNS, type JobDocumentRow } from '../db/jobs.js'
import { toJobDocument } from './document.js'
import type { FetchedJob } from './hub.js'
import type { JobNotification } from './notification.js'

/** Rows buffered per transaction before they are applied early (the transaction committed). */
const MAX_BUFFERED_ROWS = 10_000
/** Microseconds between the Unix epoch and PostgreSQL's (2000-01-01). */
const PG_EPOCH_US = 946_684_800_000_000n

export class ReplicationStats {
  /** Rows received (inserts, updates, deletes). */
  rows = 0
  transactions = 0
  /** Rows handed on as notifications because a column was not in the stream. */
  incompleteRows = 0
  /** Newest WAL position the server reported, and the newest one confirmed (bytes). */
  serverLsn = 0n
  confirmedLsn = 0n
}

/** What a decoded stream hands on. */
export interface StreamSink {
  /** A committed transaction's rows (its newest version of each job, undefined: deleted). */
  rows(rows: Map<string, FetchedJob | undefined>, ts: number): void
  incomplete(notification: JobNotification): void
  send(status: Buffer): void
}

/** One stream's state: the open transaction, the positions, and the standby status updates. */
export class StreamDecoder {
  messages = 0
  private pending: Map<string, FetchedJob | undefined> | undefined
  private ts = 0
  private confirmed = 0n

  constructor(
    private readonly plugin: PgoutputPlugin,
    private readonly stats: ReplicationStats,
    private readonly sink: StreamSink,
  ) {}

  receive(chunk: Buffer): void {
    this.messages++
    const stats = this.stats
    if (chunk[0] === 0x6b /* k: primary keepalive */) {
      const serverLsn = chunk.readBigUInt64BE(1)
      if (serverLsn > stats.serverLsn) stats.serverLsn = serverLsn
      // Between transactions everything up to the server's position has been applied.
      if (!this.pending && serverLsn > this.confirmed) this.confirmed = serverLsn
      if (chunk[17] === 1) this.sendStatus(false)
      return
    }
    if (chunk[0] !== 0x77 /* w: XLogData */) return
    const walEnd = chunk.readBigUInt64BE(9)
    if (walEnd > stats.serverLsn) stats.serverLsn = walEnd
    const message = this.plugin.parse(chunk.subarray(25))
    switch (message.tag) {
      case 'begin':
        this.pending = new Map()
        // The parser gives microseconds since the Unix epoch.
        this.ts = Number(message.commitTime as bigint) / 1000
        break
      case 'insert':
      case 'update':
        this.row(message.new)
        break
      case 'delete':
        this.removed(message.key ?? message.old)
        break
      case 'commit':
        this.flush()
        this.pending = undefined
        stats.transactions++
        this.confirmed = lsnOf(message.commitEndLsn) ?? this.confirmed
        this.sendStatus(false)
        break
      default:
      // relation, type, origin: the parser keeps what it needs; truncate is not published.
    }
  }

  /** Confirms the applied position (write = flush = apply). */
  sendStatus(isReplyRequested: boolean): void {
    const status = Buffer.alloc(34)
    status[0] = 0x72 // r: standby status update
    status.writeBigUInt64BE(this.confirmed, 1)
    status.writeBigUInt64BE(this.confirmed, 9)
    status.writeBigUInt64BE(this.confirmed, 17)
    status.writeBigUInt64BE(BigInt(Date.now()) * 1000n - PG_EPOCH_US, 25)
    status[33] = isReplyRequested ? 1 : 0
    if (this.confirmed > this.stats.confirmedLsn) this.stats.confirmedLsn = this.confirmed
    this.sink.send(status)
  }

  private row(tuple: Record<string, unknown>): void {
    this.stats.rows++
    const row = tuple as unknown as JobDocumentRow
    if (JOB_DOCUMENT_COLUMNS.some((column) => tuple[column] === undefined)) {
      // An unchanged TOASTed value (a large result or error) is not in the stream: the hub
      // reads the row, as for a notification.
      this.stats.incompleteRows++
      this.sink.incomplete({
        id: row.id,
        tenantId: row.tenant_id,
        ownerId: row.owner_id,
        version: Number(row.version),
        status: row.status,
        ts: this.ts,
      })
      return
    }
    this.add(row.id, { doc: toJobDocument(row), tenantId: row.tenant_id, ownerId: row.owner_id })
  }

  private removed(key: Record<string, unknown> | null): void {
    this.stats.rows++
    const id = key?.id
    if (typeof id === 'string') this.add(id, undefined)
  }

  private add(id: string, row: FetchedJob | undefined): void {
    const pending = (this.pending ??= new Map())
    // Only the newest version of a job in a transaction matters; re-insert keeps it last.
    pending.delete(id)
    pending.set(id, row)
    if (pending.size >= MAX_BUFFERED_ROWS) this.flush()
  }

  private flush(): void {
    if (!this.pending || this.pending.size === 0) return
    const rows = this.pending
    this.pending = new Map()
    this.sink.rows(rows, this.ts)
  }
}

/** `XXXXXXXX/XXXXXXXX` → the position in bytes. */
function lsnOf(text: string | null): bigint | undefined {
  if (!text) return undefined
  const [high, low] = text.split('/')
  return (BigInt(`0x${high}`) << 32n) | BigInt(`0x${low}`)
}
