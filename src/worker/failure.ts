// How a handler's error becomes the job's `error` ({message, code}) and the retry decision, and
// the reason a handler's AbortSignal carries. Any thrown value works: an Error's message and a
// string `code` are kept; `retryable: false` makes the failure final.
import type { Failure } from './sql.js'

/** Longer messages are cut: the error is shown to users, and stack traces belong in logs. */
const MAX_MESSAGE_LENGTH = 2000

export interface JobFailureOptions {
  /** A stable machine-readable code, e.g. `upstream_timeout`. */
  code?: string
  /** false: fail the job now instead of retrying (default true). */
  retryable?: boolean
  /** Retry after this many seconds instead of the backoff formula (least(2^attempts, 3600)). */
  retryDelaySeconds?: number
  cause?: unknown
}

/** An error a handler throws to choose the code and whether the job is retried. */
export class JobFailure extends Error {
  override readonly name = 'JobFailure'
  readonly code: string | undefined
  readonly retryable: boolean
  readonly retryDelaySeconds: number | undefined

  constructor(message: string, options: JobFailureOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.code = options.code
    this.retryable = options.retryable ?? true
    this.retryDelaySeconds = options.retryDelaySeconds
  }
}

/** Why ctx.signal was aborted. */
export type AbortCause = 'cancel-requested' | 'lease-lost' | 'worker-stopping'

/** The reason of an aborted ctx.signal; `name` is AbortError, as fetch() and timers expect. */
export class JobAbortedError extends Error {
  override readonly name = 'AbortError'

  constructor(readonly abortCause: AbortCause) {
    super(
      abortCause === 'cancel-requested'
        ? 'the job was cancelled'
        : abortCause === 'lease-lost'
          ? 'the worker lost the job (lease expired or taken over)'
          : 'the worker is stopping',
    )
  }
}

export function describeFailure(error: unknown): Failure {
  if (typeof error === 'object' && error !== null) {
    const e = error as {
      message?: unknown
      name?: unknown
      code?: unknown
      retryable?: unknown
      retryDelaySeconds?: unknown
    }
    const message =
      typeof e.message === 'string' && e.message.length > 0
        ? e.message
        : typeof e.name === 'string' && e.name.length > 0
          ? e.name
          : 'the handler failed'
    const delay = e.retryDelaySeconds
    return {
      message: truncate(message),
      code: typeof e.code === 'string' || typeof e.code === 'number' ? String(e.code) : null,
      retryable: e.retryable !== false,
      retryDelaySeconds:
        typeof delay === 'number' && Number.isFinite(delay) && delay >= 0
          ? Math.round(delay)
          : undefined,
    }
  }
  const text = error === undefined ? '' : String(error)
  return { message: truncate(text || 'the handler failed'), code: null, retryable: true }
}

function truncate(message: string): string {
  return message.length > MAX_MESSAGE_LENGTH
    ? `${message.slice(0, MAX_MESSAGE_LENGTH - 1)}…`
    : message
}
