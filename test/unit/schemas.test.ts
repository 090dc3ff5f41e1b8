// The create-job body: what the schema lets through must be storable by PostgreSQL, so that a
// bad value is a 400 that names the field rather than a 500 from the database.
import { MAX_PAYLOAD_DEPTH, createJobBodySchema } from '../../src/http/schemas.js'

const nested = (levels: number): unknown =>
  JSON.parse('['.repeat(levels) + ']'.repeat(levels)) as unknown

function issuesOf(body: unknown): string[] {
  const result = createJobBodySchema.safeParse(body)
  return result.success ? [] : result.error.issues.map((i) => i.path.join('.'))
}

describe('the create-job body', () => {
  it(`accepts a payload nested exactly ${MAX_PAYLOAD_DEPTH} levels and refuses one more`, () => {
    expect(issuesOf({ type: 'x', payload: nested(MAX_PAYLOAD_DEPTH) })).toEqual([])
    expect(issuesOf({ type: 'x', payload: nested(MAX_PAYLOAD_DEPTH + 1) })).toEqual(['payload'])
  })

  it('refuses a very deep payload without overflowing the stack', () => {
    expect(issuesOf({ type: 'x', payload: nested(200_000) })).toEqual(['payload'])
  })

  it('refuses the NUL character in payload strings and keys, which jsonb cannot hold', () => {
    expect(issuesOf({ type: 'x', payload: { note: 'a\u0000b' } })).toEqual(['payload'])
    expect(issuesOf({ type: 'x', payload: { 'k\u0000': 1 } })).toEqual(['payload'])
    expect(issuesOf({ type: 'x', payload: ['ok', ['deeper \u0000']] })).toEqual(['payload'])
    expect(issuesOf({ type: 'x', payload: { note: 'naïve ☃ \u0001' } })).toEqual([])
  })

  it('refuses numbers JSON cannot carry (1e400 parses to Infinity)', () => {
    expect(issuesOf(JSON.parse('{"type":"x","payload":{"n":1e400}}'))).toEqual(['payload'])
  })

  it('accepts any plain JSON value as payload, and no payload at all', () => {
    for (const payload of [null, 0, 'text', true, [1, 'a'], { a: { b: [null] } }]) {
      expect(issuesOf({ type: 'x', payload })).toEqual([])
    }
    expect(issuesOf({ type: 'x' })).toEqual([])
  })

  it('refuses run_at in year 0, which PostgreSQL does not have, and accepts year 1', () => {
    expect(issuesOf({ type: 'x', run_at: '0000-06-01T00:00:00Z' })).toEqual(['run_at'])
    expect(issuesOf({ type: 'x', run_at: '0001-01-01T00:00:00Z' })).toEqual([])
    expect(issuesOf({ type: 'x', run_at: '2024-02-30T00:00:00Z' })).toEqual(['run_at'])
  })

  it('refuses unknown fields and a type outside the pattern', () => {
    expect(issuesOf({ type: 'x', status: 'completed' })).toEqual([''])
    expect(issuesOf({ type: '-x' })).toEqual(['type'])
    expect(issuesOf({ type: 'a'.repeat(129) })).toEqual(['type'])
  })
})
