// Translates PostgreSQL errors into the error catalogue, once, by SQLSTATE and constraint
// name (never by message text). Anything unknown is rethrown and becomes a 500.
import { AppError, JobTerminalError, ValidationError } from '../errors.js'

/** SQLSTATEs raised by the job_queue triggers (migrations/…_job-queue.sql). */
export const SQLSTATE = {
  jobTerminal: 'JW001',
  immutableColumn: 'JW002',
  checkViolation: '23514',
  uniqueViolation: '23505',
  invalidTextRepresentation: '22P02',
  numericOutOfRange: '22003',
  insufficientPrivilege: '42501',
} as const

interface PgError {
  code?: string
  constraint?: string
  message?: string
}

function isPgError(error: unknown): error is PgError {
  return typeof error === 'object' && error !== null && typeof (error as PgError).code === 'string'
}

export function translateDbError(error: unknown): unknown {
  if (error instanceof AppError || !isPgError(error)) return error
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
    case SQLSTATE.numericOutOfRange:
    case SQLSTATE.invalidTextRepresentation:
      return new ValidationError('A value is out of range or malformed.')
    default:
      return error
  }
}

export function isUniqueViolation(error: unknown, constraint: string): boolean {
  return (
    isPgError(error) && error.code === SQLSTATE.uniqueViolation && error.constraint === constraint
  )
}
