// Translates PostgreSQL errors into the error catalogue, once, by SQLSTATE and constraint
// name (never by message text). Anything unknown is rethrown and becomes a 500.
import { AppError, JobTerminalError, ServiceUnavailableError, ValidationError } from '../errors.js'

/**
 * SQLSTATEs jobwire raises (the job_queue triggers and the worker functions: the headers of
 * migrations/…_job-queue.sql and …_worker-functions.sql) or handles.
 */
export const SQLSTATE = {
  jobTerminal: 'JW001',
  immutableColumn: 'JW002',
  /** The worker no longer holds the job: finished, re-queued by the reaper, or taken over. */
  leaseLost: 'JW003',
  jobNotFound: 'JW004',
  invalidParameter: '22023',
  checkViolation: '23514',
  uniqueViolation: '23505',
  invalidTextRepresentation: '22P02',
  numericOutOfRange: '22003',
  insufficientPrivilege: '42501',
  queryCanceled: '57014',
} as const

/**
 * Data exceptions a request's values can cause once they reach PostgreSQL, whatever the
 * validation before missed: a 400, never a 500. 54001 is "stack depth limit exceeded"
 * (jsonb nested too deep).
 */
const VALUE_REJECTED = new Set([
  '22001', // string_data_right_truncation
  '22003', // numeric_value_out_of_range
  '22007', // invalid_datetime_format
  '22008', // datetime_field_overflow
  '22009', // invalid_time_zone_displacement_value
  '22021', // character_not_in_repertoire (a NUL byte in text)
  '22P02', // invalid_text_representation
  '22P05', // untranslatable_character (\u0000 in jsonb)
  '54001', // statement_too_complex
])

/**
 * The database cannot answer now, and a retry soon may succeed: a lost or refused connection
 * (class 08 and the socket's own codes), a server shutting down or starting (57P01–57P03),
 * no connection slot left (53300), a statement cancelled by statement_timeout (57014).
 */
const UNAVAILABLE = new Set([
  SQLSTATE.queryCanceled,
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now
  '53300', // too_many_connections
  'ECONNREFUSED',
  'ECONNRESET',
])

/**
 * pg-pool's error when no connection came free within connectionTimeoutMillis. It has no
 * code: its exact message is the only thing that tells it apart.
 */
const POOL_TIMEOUT_MESSAGE = 'timeout exceeded when trying to connect'

interface PgError {
  code?: string
  constraint?: string
  message?: string
}

/** An error with a SQLSTATE (or a Node.js socket error code) in `code`. */
export function isPgError(error: unknown): error is PgError & { code: string } {
  return typeof error === 'object' && error !== null && typeof (error as PgError).code === 'string'
}

export function translateDbError(error: unknown): unknown {
  if (error instanceof AppError) return error
  if (error instanceof Error && error.message === POOL_TIMEOUT_MESSAGE) return unavailable()
  if (!isPgError(error)) return error
  if (UNAVAILABLE.has(error.code) || error.code.startsWith('08')) return unavailable()
  switch (error.code) {
    case SQLSTATE.jobTerminal:
      return new JobTerminalError(
        'The job has reached a terminal status and cannot change any more.',
      )
    case SQLSTATE.checkViolation:
      return new ValidationError(
        `A value breaks the rule ${error.constraint ?? 'of the job table'}.`,
        [{ name: error.constraint ?? 'body', reason: 'violates a database constraint' }],
      )
    default:
      if (VALUE_REJECTED.has(error.code)) {
        return new ValidationError('A value is out of range or malformed.')
      }
      return error
  }
}

function unavailable(): ServiceUnavailableError {
  return new ServiceUnavailableError('The database is busy or unreachable; retry in a moment.', 1)
}
