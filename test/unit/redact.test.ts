import { redactUrl, redactText } from '../../src/telemetry/logger.js'

const JWT = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl'

describe('redactUrl', () => {
  it.each([
    ['/v1/jobs/1/events?token=abc&format=full', '/v1/jobs/1/events?token=[redacted]&format=full'],
    [
      '/v1/jobs/1/events?format=full&watch_token=abc',
      '/v1/jobs/1/events?format=full&watch_token=[redacted]',
    ],
    // URLSearchParams decodes names, so `%74oken` authenticates like `token`: mask it too.
    ['/v1/jobs/1/events?%74oken=abc', '/v1/jobs/1/events?%74oken=[redacted]'],
    ['/v1/jobs/1/events?access_token=abc', '/v1/jobs/1/events?access_token=[redacted]'],
    [`/v1/ws?other=${JWT}`, '/v1/ws?other=[redacted]'],
    ['/v1/jobs?status=queued', '/v1/jobs?status=queued'],
    ['/v1/jobs/%E0%A4%A?token=x', '/v1/jobs/%E0%A4%A?token=[redacted]'],
  ])('masks %s', (url, expected) => {
    expect(redactUrl(url)).toBe(expected)
  })

  it('leaves a URL without a query alone, except a JWT in the path', () => {
    expect(redactUrl('/v1/jobs')).toBe('/v1/jobs')
    expect(redactUrl(`/v1/${JWT}`)).toBe('/v1/[redacted]')
    expect(redactUrl(undefined)).toBeUndefined()
  })

  // A JWT pasted where a job id goes: express decodes the path, so %2E is a dot to it, and
  // the token is as good as in the clear.
  const encoded = JWT.replaceAll('.', '%2E')
  const lower = JWT.replaceAll('.', '%2e')
  const everyChar = [...JWT].map((c) => `%${c.charCodeAt(0).toString(16)}`).join('')
  it.each([
    [`/v1/jobs/${encoded}`, '/v1/jobs/[redacted]'],
    [`/v1/jobs/${lower}/events`, '/v1/jobs/[redacted]/events'],
    [`/v1/jobs/${everyChar}/wait?timeout=1`, '/v1/jobs/[redacted]/wait?timeout=1'],
    [`/v1/jobs/${JWT.replaceAll('.', '%252E')}`, '/v1/jobs/[redacted]'],
    // A malformed escape next to the token (decodeURIComponent would throw) hides nothing.
    [`/v1/jobs/${encoded}%ZZ`, '/v1/jobs/[redacted]'],
    [`/v1/events?jobs=a,${encoded}&format=full`, '/v1/events?jobs=a,[redacted]&format=full'],
    [`/v1/jobs/${JWT}/events?token=abc`, '/v1/jobs/[redacted]/events?token=[redacted]'],
    [`/v1/ws?other=${encoded}`, '/v1/ws?other=[redacted]'],
  ])('masks a token in a path segment or value, percent-encoded or not: %s', (url, expected) => {
    expect(redactUrl(url)).toBe(expected)
  })

  it('leaves ordinary paths with dots and escapes alone', () => {
    for (const url of [
      '/app.js',
      '/v1/jobs/0b6e1b9e-8a5d-4c33-9a43-1d2b3c4d5e6f',
      '/v1/jobs?type=report.v2.pdf',
      '/v1/jobs/%E2%9C%93',
      '/v1/jobs?type=a%2Eb%2Ec',
    ]) {
      expect(redactUrl(url)).toBe(url)
    }
  })
})

describe('redactText', () => {
  it('masks JWT-shaped text and token parameters in free text', () => {
    expect(redactText(`GET /x?token=abc failed with ${JWT}`)).toBe(
      'GET /x?token=[redacted] failed with [redacted]',
    )
  })

  it('masks a percent-encoded JWT quoted in an error message', () => {
    expect(redactText(`no route /v1/jobs/${JWT.replaceAll('.', '%2E')}/x`)).toBe(
      'no route /v1/jobs/[redacted]/x',
    )
  })
})
