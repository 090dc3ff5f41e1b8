// zod at the edge: a failed parse becomes a 400 that lists every failing field.
import type { z } from 'zod'
import { ValidationError } from '../errors.js'

export type RequestPart = 'query' | 'body' | 'path' | 'header'

export function parseRequest<S extends z.ZodType>(
  schema: S,
  value: unknown,
  part: RequestPart,
): z.output<S> {
  const result = schema.safeParse(value)
  if (result.success) return result.data
  const invalid = result.error.issues.map((issue) => ({
    name: [part, ...issue.path.map(String)].join('.'),
    reason: issue.message,
  }))
  const first = invalid[0]!
  throw new ValidationError(
    invalid.length === 1
      ? `${first.name}: ${first.reason}`
      : `${invalid.length} fields are invalid; first ${first.name}: ${first.reason}`,
    invalid,
  )
}
