// After the listener (or the event source) was disconnected, notifications sent meanwhile are
// lost: PostgreSQL keeps none for a listener that is not there. Owns what makes up for them:
//   * every watched job is re-read (its watchers then get what changed, as a patch);
//   * tenant feeds (and the Redis bridge, which watches everything) also need jobs nobody
//     watched one by one, including jobs created during the gap: the jobs of every tenant
//     with an open feed whose updated_at is at or after the moment the connection dropped,
//     minus a margin for clock skew and transactions that committed late, are read and
//     handed to the hub like any change (docs/decisions.md, "Feeds across a listener outage").
import type { Logger } from '../telemetry/logger.js'
import type { FetchedJob, Hub } from './hub.js'

/** How far back before the outage to read, and at most how many jobs. */
export const CATCH_UP_MARGIN_MS = 5000
export const CATCH_UP_MAX_JOBS = 10_000

export interface OutageCatchUpOptions {
  hub: Hub
  logger: Logger
  /** Jobs of `tenants` (or all) changed at or after `since`, oldest change first. */
  fetchChangedSince(tenants: string[] | 'all', since: Date, limit: number): Promise<FetchedJob[]>
}

export class OutageCatchUp {
  private disconnectedAt: number | undefined

  constructor(private readonly options: OutageCatchUpOptions) {}

  /** The connection dropped (only the first drop of an outage counts). */
  disconnected(): void {
    this.disconnectedAt ??= Date.now()
  }

  /** The connection is back: re-read watched jobs, and catch the feeds up. */
  reconnected(): void {
    const { hub, logger } = this.options
    hub.refreshWatched({ includeTerminal: true })
    const since = this.disconnectedAt
    this.disconnectedAt = undefined
    const tenants = hub.feedTenants()
    if (since === undefined || (tenants !== 'all' && tenants.length === 0)) return
    this.options
      .fetchChangedSince(tenants, new Date(since - CATCH_UP_MARGIN_MS), CATCH_UP_MAX_JOBS)
      .then(
        (rows) => {
          if (rows.length >= CATCH_UP_MAX_JOBS)
            logger.warn({ rows: rows.length }, 'feed catch-up truncated')
          hub.catchUp(rows)
        },
        (error: unknown) =>
          logger.warn({ err: error }, 'feed catch-up after a listener outage failed'),
      )
  }
}
