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
})

describe('redactText', () => {
  it('masks JWT-shaped text and token parameters in free text', () => {
    expect(redactText(`GET /x?token=abc failed with ${JWT}`)).toBe(
      'GET /x?token=[redacted] failed with [redacted]',
    )
  })
})
