// The one error mapper: whatever is thrown becomes an RFC 9457 problem with the right status,
// or undefined (a 500 that says nothing about internals).
import { asAppError, toProblem } from '../../src/http/problem.js'
import { translateDbError } from '../../src/db/errors.js'
import {
  AppError,
  JobNotFoundError,
  JobTerminalError,
  ServiceUnavailableError,
  TooManyRequestsError,
  ValidationError,
} from '../../src/errors.js'

/** What pg throws: the server's fields, SQLSTATE in `code`. */
function pgError(code: string, fields: Record<string, string> = {}): Error {
  return Object.assign(new Error(`pg says ${code}: SELECT secret FROM internals`), {
    code,
    ...fields,
  })
}

/** What body-parser throws: an http-error with a status and sometimes a `type`. */
function parserError(status: number, type?: string): Error {
  return Object.assign(new Error('body-parser'), { status, statusCode: status, expose: true, type })
}

describe('toProblem', () => {
  it('writes type, title, status, detail, instance and the extensions', () => {
    const error = new ValidationError('query.limit: must be at most 100', [
      { name: 'query.limit', reason: 'must be at most 100' },
    ])
    expect(toProblem(error, '/v1/jobs')).toEqual({
      type: 'https://jobwire.dev/problems/validation-error',
      title: 'Your request is not valid',
      status: 400,
      detail: 'query.limit: must be at most 100',
      instance: '/v1/jobs',
      invalid_params: [{ name: 'query.limit', reason: 'must be at most 100' }],
    })
  })

  it('leaves instance out when there is none', () => {
    expect(toProblem(new JobNotFoundError('x'))).not.toHaveProperty('instance')
  })

  it('keeps the headers that belong to an error, such as Retry-After', () => {
    expect(new TooManyRequestsError('slow down', 1.2).headers).toEqual({ 'retry-after': '2' })
  })
})

describe('asAppError', () => {
  it('passes application errors through unchanged', () => {
    const error = new JobNotFoundError('abc')
    expect(asAppError(error)).toBe(error)
  })

  it.each([
    ['the terminal-status trigger (JW001)', 'JW001', 409],
    ['a check constraint (23514)', '23514', 400],
    ['malformed text (22P02)', '22P02', 400],
    ['a number out of range (22003)', '22003', 400],
    ['an impossible date (22008)', '22008', 400],
    ['a bad time zone offset (22009)', '22009', 400],
    ['\\u0000 in jsonb (22P05)', '22P05', 400],
    ['a NUL byte in text (22021)', '22021', 400],
    ['jsonb nested too deep (54001)', '54001', 400],
  ])('maps %s to %i', (_name, code, status) => {
    const mapped = asAppError(pgError(code, { constraint: 'job_queue_progress_check' }))
    expect(mapped).toBeInstanceOf(AppError)
    expect(mapped?.status).toBe(status)
    expect(mapped?.message).not.toMatch(/SELECT|internals/)
  })

  it('names the broken constraint for a check violation', () => {
    const mapped = translateDbError(pgError('23514', { constraint: 'job_queue_progress_check' }))
    expect(mapped).toBeInstanceOf(ValidationError)
    expect((mapped as ValidationError).invalidParams).toEqual([
      expect.objectContaining({ name: 'job_queue_progress_check' }),
    ])
  })

  it('maps the terminal trigger to JobTerminalError', () => {
    expect(translateDbError(pgError('JW001'))).toBeInstanceOf(JobTerminalError)
  })

  it.each([
    ['a connection failure (08006)', pgError('08006')],
    ['a statement timeout (57014)', pgError('57014')],
    ['a server shutting down (57P01)', pgError('57P01')],
    ['a refused connection (ECONNREFUSED)', pgError('ECONNREFUSED')],
    ['no free pool connection in time', new Error('timeout exceeded when trying to connect')],
  ])('maps %s to 503 with Retry-After: 1', (_name, error) => {
    const mapped = asAppError(error)
    expect(mapped).toBeInstanceOf(ServiceUnavailableError)
    expect(mapped?.status).toBe(503)
    expect(mapped?.headers).toEqual({ 'retry-after': '1' })
    expect(mapped?.message).not.toMatch(/SELECT|internals|timeout exceeded/)
  })

  it.each([
    ['a deadlock (40P01)', '40P01'],
    ['an insufficient privilege (42501)', '42501'],
    ['a syntax error in our SQL (42601)', '42601'],
    ['the tenant trigger (JW002), which requests never hit', 'JW002'],
  ])('leaves %s as an internal error', (_name, code) => {
    expect(asAppError(pgError(code))).toBeUndefined()
  })

  it.each([
    ['entity.too.large', 413, 413],
    ['entity.parse.failed', 400, 400],
    ['encoding.unsupported', 415, 415],
    ['charset.unsupported', 415, 415],
    ['request.aborted', 400, 400],
    ['request.size.invalid', 400, 400],
    [undefined, 400, 400], // e.g. a corrupt gzip body
    [undefined, 413, 413],
  ])('maps a body-parser error of type %s (status %i) to %i', (type, status, expected) => {
    expect(asAppError(parserError(status, type))?.status).toBe(expected)
  })

  it('maps a percent-encoding error in the URL to 400', () => {
    expect(asAppError(new URIError('URI malformed'))?.status).toBe(400)
  })

  it('leaves unknown errors for the 500 handler', () => {
    expect(asAppError(new Error('boom'))).toBeUndefined()
    expect(asAppError(new TypeError('x is undefined'))).toBeUndefined()
    expect(asAppError(undefined)).toBeUndefined()
    expect(asAppError('a string')).toBeUndefined()
  })
})
