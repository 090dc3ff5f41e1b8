// Counts every query a process sends through node-postgres (pool and single clients alike),
// by patching pg.Client#query once. Exact and immediate, unlike pg_stat_database, whose
// counters a backend may flush up to a minute late. `listener` counts the connection whose
// application_name is `jobwire-listener` (its keep-alive pings are not caused by watchers).
import pg from 'pg'

export const queryCounts = { total: 0, listener: 0 }

type Query = (this: pg.Client, ...args: unknown[]) => unknown

let isInstalled = false

export function countQueries(): typeof queryCounts {
  if (isInstalled) return queryCounts
  isInstalled = true
  const original = pg.Client.prototype.query as unknown as Query
  ;(pg.Client.prototype as unknown as { query: Query }).query = function (
    this: pg.Client,
    ...args
  ) {
    queryCounts.total++
    const app = (this as unknown as { connectionParameters?: { application_name?: string } })
      .connectionParameters?.application_name
    if (app === 'jobwire-listener') queryCounts.listener++
    return original.apply(this, args)
  }
  return queryCounts
}
