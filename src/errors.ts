// The error catalogue. Code throws these; src/http/problem.ts is the one place that
// turns them into RFC 9457 application/problem+json. docs/errors.md lists each type.

export interface InvalidField {
  /** Where the value came from and its path, e.g. `query.timeout`, `body.payload`. */
  name: string
  reason: string
}

export abstract class AppError extends Error {
  abstract readonly status: number
  /** Slug under PROBLEM_BASE. */
  abstract readonly type: string
  abstract readonly title: string
  /** Extra members of the problem document (e.g. `invalid_params`). */
  readonly extensions: Record<string, unknown> = {}
  /** Response headers that belong to this error (e.g. Retry-After). */
  readonly headers: Record<string, string> = {}
}

export class ValidationError extends AppError {
  readonly status = 400
  readonly type = 'validation-error'
  readonly title = 'Your request is not valid'
  constructor(
    detail: string,
    readonly invalidParams: InvalidField[] = [],
  ) {
    super(detail)
    this.extensions.invalid_params = invalidParams
  }
}

export class UnauthorizedError extends AppError {
  readonly status = 401
  readonly type = 'unauthorized'
  readonly title = 'Authentication required'
  override readonly headers: Record<string, string> = {
    'www-authenticate': 'Bearer realm="jobwire"',
  }
}

export class ForbiddenError extends AppError {
  readonly status = 403
  readonly type = 'forbidden'
  readonly title = 'Not allowed'
}

/** A missing job and another tenant's (or another member's) job are the same error. */
export class JobNotFoundError extends AppError {
  readonly status = 404
  readonly type = 'job-not-found'
  readonly title = 'Job not found'
  constructor(readonly jobId: string) {
    super(`No job ${jobId} is visible to you.`)
  }
}

export class RouteNotFoundError extends AppError {
  readonly status = 404
  readonly type = 'not-found'
  readonly title = 'Not found'
}

export class JobTerminalError extends AppError {
  readonly status = 409
  readonly type = 'job-terminal'
  readonly title = 'The job has already finished'
}

export class IdempotencyConflictError extends AppError {
  readonly status = 422
  readonly type = 'idempotency-key-reused'
  readonly title = 'Idempotency-Key reused with a different request'
}

export class PayloadTooLargeError extends AppError {
  readonly status = 413
  readonly type = 'payload-too-large'
  readonly title = 'Request body too large'
}

export class UnsupportedMediaTypeError extends AppError {
  readonly status = 415
  readonly type = 'unsupported-media-type'
  readonly title = 'Unsupported media type'
}

export class TooManyRequestsError extends AppError {
  readonly status = 429
  readonly type = 'too-many-requests'
  readonly title = 'Too many requests'
  constructor(detail: string, retryAfterSeconds: number) {
    super(detail)
    this.headers['retry-after'] = String(Math.max(1, Math.ceil(retryAfterSeconds)))
  }
}

/** The database cannot serve the request now; Retry-After says when to try again. */
export class ServiceUnavailableError extends AppError {
  readonly status = 503
  readonly type = 'service-unavailable'
  readonly title = 'Service unavailable'
  constructor(detail: string, retryAfterSeconds: number) {
    super(detail)
    this.headers['retry-after'] = String(Math.max(1, Math.ceil(retryAfterSeconds)))
  }
}

/** Start-up configuration problems: printed as one line, exit code 1. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError'
}
