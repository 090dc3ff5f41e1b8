// The list cursor is opaque to clients but must survive a round trip exactly (microseconds
// included) and turn anything else into a 400 before it reaches PostgreSQL.
import { randomUUID } from 'node:crypto'
import { decodeCursor, encodeCursor } from '../../src/http/cursor.js'
import { ValidationError } from '../../src/errors.js'

const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')

describe('the list cursor', () => {
  it('round-trips the position exactly, microseconds included', () => {
    const position = { createdAt: '2026-11-24T13:14:39.123456Z', id: randomUUID() }
    const text = encodeCursor(position)
    expect(text).toMatch(/^[A-Za-z0-9_-]+$/)
    expect(decodeCursor(text)).toEqual(position)
  })

  it('accepts a leap day and the first instant of year 1', () => {
    for (const createdAt of ['2024-02-29T23:59:59.999999Z', '0001-01-01T00:00:00.000000Z']) {
      expect(decodeCursor(encode([createdAt, randomUUID()])).createdAt).toBe(createdAt)
    }
  })

  it.each([
    ['not base64 JSON', 'garbage'],
    ['empty', ''],
    ['an object', encode({ createdAt: '2026-01-01T00:00:00.000000Z', id: randomUUID() })],
    ['one element', encode(['2026-01-01T00:00:00.000000Z'])],
    ['three elements', encode(['2026-01-01T00:00:00.000000Z', randomUUID(), 1])],
    ['a malformed id', encode(['2026-01-01T00:00:00.000000Z', 'abc'])],
    ['a date without time', encode(['2026-01-01', randomUUID()])],
    ['milliseconds only', encode(['2026-01-01T00:00:00.000Z', randomUUID()])],
    ['an offset instead of Z', encode(['2026-01-01T00:00:00.000000+01:00', randomUUID()])],
    ['month 13', encode(['2026-13-01T00:00:00.000000Z', randomUUID()])],
    ['30 February', encode(['2026-02-30T00:00:00.000000Z', randomUUID()])],
    ['29 February of a common year', encode(['2025-02-29T00:00:00.000000Z', randomUUID()])],
    ['hour 24', encode(['2026-01-01T24:00:00.000000Z', randomUUID()])],
    ['second 60', encode(['2026-01-01T23:59:60.000000Z', randomUUID()])],
    ['year 0', encode(['0000-06-01T00:00:00.000000Z', randomUUID()])],
    ['numbers', encode([1, 2])],
  ])('refuses %s with a 400 naming query.cursor', (_name, text) => {
    let thrown: unknown
    try {
      decodeCursor(text)
    } catch (error) {
      thrown = error
    }
    expect(thrown).toBeInstanceOf(ValidationError)
    expect((thrown as ValidationError).status).toBe(400)
    expect((thrown as ValidationError).invalidParams).toEqual([
      { name: 'query.cursor', reason: expect.any(String) },
    ])
  })
})
