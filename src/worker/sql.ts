// Typed calls to the SQL worker functions (migrations/1764000000001_worker-functions.sql), one
// round trip each. The functions are the contract; this module only names their arguments and
// turns their rows into TypeScript values. It runs with the rights of the pool's login.
import { sql } from 'kysely'
import { isPgError, SQLSTATE } from '../db/errors.js'
import type { Db } from '../db/pool.js'
import type { JobRow } from '../db/schema.js'

/**
 * The worker API's name for the SQLSTATE catalogue. A worker meets jobTerminal, leaseLost,
 * jobNotFound, invalidParameter and checkViolation (the worker functions' migration lists them).
 */
export const WORKER_SQLSTATE = SQLSTATE

/** What heartbeat and progress answer: is the job still ours, and does its owner want it stopped. */
export interface LeaseState {
  lease_held: boolean
  cancel_requested: boolean
}

export interface ProgressUpdate {
  progress: number
  /** undefined keeps the current step (the function's NULL). */
  step?: string
  etaSeconds?: number
}

export interface Failure {
  message: string
  code?: string | null
  retryable: boolean
  /** Replaces the backoff formula; undefined uses least(2^attempts, 3600) seconds. */
  retryDelaySeconds?: number
}

export function isLeaseLost(error: unknown): boolean {
  return (
    isPgError(error) && (error.code === SQLSTATE.leaseLost || error.code === SQLSTATE.jobNotFound)
  )
}

export async function claimJobs(
  db: Db,
  workerId: string,
  types: readonly string[],
  maxJobs: number,
  leaseSeconds: number,
): Promise<JobRow[]> {
  const { rows } = await sql<JobRow>`SELECT * FROM jobwire_claim(${workerId}, ${[
    ...types,
  ]}::text[], ${maxJobs}::int, ${leaseSeconds}::int)`.execute(db)
  return rows
}

export async function heartbeatJob(
  db: Db,
  jobId: string,
  workerId: string,
  leaseSeconds: number,
): Promise<LeaseState> {
  const { rows } =
    await sql<LeaseState>`SELECT * FROM jobwire_heartbeat(${jobId}::uuid, ${workerId}, ${leaseSeconds}::int)`.execute(
      db,
    )
  return rows[0] ?? { lease_held: false, cancel_requested: false }
}

export async function reportProgress(
  db: Db,
  jobId: string,
  workerId: string,
  update: ProgressUpdate,
  leaseSeconds: number,
): Promise<LeaseState> {
  const { rows } =
    await sql<LeaseState>`SELECT * FROM jobwire_progress(${jobId}::uuid, ${workerId}, ${update.progress}::float8, ${
      update.step ?? null
    }::text, ${update.etaSeconds ?? null}::int, ${leaseSeconds}::int)`.execute(db)
  return rows[0] ?? { lease_held: false, cancel_requested: false }
}

/** `resultJson` is the result as JSON text, or null for none (a handler that returned nothing). */
export async function completeJob(
  db: Db,
  jobId: string,
  workerId: string,
  resultJson: string | null,
): Promise<void> {
  await sql`SELECT 1 FROM jobwire_complete(${jobId}::uuid, ${workerId}, ${resultJson}::jsonb)`.execute(
    db,
  )
}

export async function failJob(
  db: Db,
  jobId: string,
  workerId: string,
  failure: Failure,
): Promise<void> {
  await sql`SELECT 1 FROM jobwire_fail(${jobId}::uuid, ${workerId}, ${failure.message}, ${
    failure.code ?? null
  }::text, ${failure.retryable}, ${failure.retryDelaySeconds ?? null}::int)`.execute(db)
}

export async function acknowledgeCancel(db: Db, jobId: string, workerId: string): Promise<void> {
  await sql`SELECT 1 FROM jobwire_cancelled(${jobId}::uuid, ${workerId})`.execute(db)
}

export async function releaseJob(
  db: Db,
  jobId: string,
  workerId: string,
  message: string,
): Promise<void> {
  await sql`SELECT 1 FROM jobwire_release(${jobId}::uuid, ${workerId}, ${message})`.execute(db)
}

export async function reapExpiredLeases(db: Db): Promise<number> {
  const { rows } = await sql<{
    reaped: number
  }>`SELECT jobwire_reap_expired_leases() AS reaped`.execute(db)
  return Number(rows[0]?.reaped ?? 0)
}
