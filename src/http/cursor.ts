// The opaque list cursor: base64url of [created_at text, id]. Garbage is a 400.
import { z } from 'zod'
import type { ListCursor } from '../db/jobs.js'
import { ValidationError } from '../errors.js'

// As listVisibleJobs writes it: UTC, microseconds, e.g. 2026-01-02T03:04:05.123456Z.
const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/
const cursorSchema = z.tuple([z.string().regex(TIMESTAMP).refine(isRealInstant), z.guid()])

/** A date and time that exists (no 2024-13-45, no 25:00, no year 0): PostgreSQL would raise. */
function isRealInstant(text: string): boolean {
  const millis = `${text.slice(0, 23)}Z`
  const date = new Date(millis)
  return !Number.isNaN(date.getTime()) && date.toISOString() === millis && !text.startsWith('0000')
}

export function encodeCursor(cursor: ListCursor): string {
  return Buffer.from(JSON.stringify([cursor.createdAt, cursor.id])).toString('base64url')
}

export function decodeCursor(text: string): ListCursor {
  let parsed: unknown
  try {
    parsed = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'))
  } catch {
    parsed = undefined
  }
  const result = cursorSchema.safeParse(parsed)
  if (!result.success) {
    throw new ValidationError(
      'query.cursor: not a cursor from this API (pass next_cursor as it came)',
      [{ name: 'query.cursor', reason: 'not a cursor from this API' }],
    )
  }
  return { createdAt: result.data[0], id: result.data[1] }
}
