// Table types for kysely. Row types are Selectable<JobQueueTable>, snake_case, no
// case-conversion layer. bigint columns arrive from pg as strings.
import type { ColumnType, Generated, Selectable } from 'kysely'
import type { JobStatus } from '../protocol/job.js'

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>
type Json = ColumnType<unknown, string | undefined, string>

export interface JobQueueTable {
  id: Generated<string>
  tenant_id: string
  owner_id: string | null
  type: string
  status: ColumnType<JobStatus, JobStatus | undefined, JobStatus>
  progress: ColumnType<number, number | undefined, number>
  step: string | null
  eta_seconds: number | null
  payload: Json
  result: ColumnType<unknown, string | null | undefined, string | null>
  error: ColumnType<unknown, string | null | undefined, string | null>
  version: ColumnType<string, never, never>
  priority: ColumnType<number, number | undefined, number>
  attempts: ColumnType<number, number | undefined, number>
  max_attempts: ColumnType<number, number | undefined, number>
  run_at: Timestamp
  locked_by: string | null
  locked_until: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>
  cancel_requested: ColumnType<boolean, boolean | undefined, boolean>
  idempotency_key: string | null
  request_hash: string | null
  created_at: ColumnType<Date, never, never>
  updated_at: ColumnType<Date, never, never>
  started_at: ColumnType<Date | null, never, never>
  completed_at: ColumnType<Date | null, never, never>
}

export interface Database {
  job_queue: JobQueueTable
}

export type JobRow = Selectable<JobQueueTable>
