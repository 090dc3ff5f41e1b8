// The opaque list cursor: base64url of [created_at text, id]. Garbage is a 400.
import { z } from 'zod'
import type { ListCursor } from '../db/jobs.js'
import { ValidationError } from '../errors.js'

const TIMESTAMP = /^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([+-]\d{2}(:?\d{2})?|Z)?$/
const cursorSchema = z.tuple([z.string().regex(TIMESTAMP), z.guid()])

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
