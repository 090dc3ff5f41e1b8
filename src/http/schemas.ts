// Request schemas (zod). The same schemas validate requests and, later, generate the
// OpenAPI document. Unknown body keys and unknown query parameters are rejected on every
// route, streams included: a typo must not silently do nothing. `_` alone is accepted and
// ignored (the cache-buster that jQuery and EventSource polyfills add; docs/decisions.md).
import { z } from 'zod'
import { QUERY } from '../protocol/http.js'
import { JOB_STATUSES } from '../protocol/job.js'

export const JOB_TYPE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$/

export const jobIdSchema = z.guid({ error: 'expected a UUID' }).transform((id) => id.toLowerCase())

export const jobParamsSchema = z.object({ id: jobIdSchema })

/**
 * A route's query: its own parameters and `_`; anything else is a 400 naming it. `_` takes
 * any value, repeated or not.
 */
export function strictQuery<S extends z.ZodRawShape>(shape: S) {
  return z.strictObject(
    { ...shape, [QUERY.cacheBuster]: z.unknown().optional() },
    {
      error: (issue) =>
        issue.code === 'unrecognized_keys'
          ? `unknown parameter(s): ${issue.keys.join(', ')}`
          : undefined,
    },
  )
}

/** The token a stream route takes from its query (docs/api.md, "Authentication"). */
export const queryToken = z.string({ error: 'expected a single token' }).optional()

/**
 * Routes with no parameters of their own (create, cancel, the document): only the token,
 * which the authentication judges first, and `_`.
 */
export const noQuerySchema = strictQuery({ [QUERY.token]: queryToken })

/**
 * Payloads deeper than this are refused: the validator and PostgreSQL's jsonb parser both
 * recurse per level, and ten thousand `[` in a 20 KB body would overflow their stacks.
 */
export const MAX_PAYLOAD_DEPTH = 64

/** Why PostgreSQL's jsonb would refuse this JSON value, or undefined. Iterative: no recursion. */
function jsonbProblem(value: unknown): string | undefined {
  const stack: Array<[unknown, number]> = [[value, 1]]
  while (stack.length > 0) {
    const [current, depth] = stack.pop()!
    if (typeof current === 'string') {
      if (current.includes('\u0000')) return 'strings cannot contain the NUL character (\\u0000)'
      continue
    }
    if (current === null || typeof current !== 'object') continue
    if (depth > MAX_PAYLOAD_DEPTH) return `nested deeper than ${MAX_PAYLOAD_DEPTH} levels`
    for (const [key, child] of Object.entries(current)) {
      if (key.includes('\u0000')) return 'keys cannot contain the NUL character (\\u0000)'
      stack.push([child, depth + 1])
    }
  }
  return undefined
}

// The limits run first; z.json() then checks the shape (finite numbers, plain values).
const payloadSchema = z
  .unknown()
  .superRefine((value, ctx) => {
    const problem = jsonbProblem(value)
    if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem })
  })
  .pipe(z.json())
  .describe(
    `The job's input: any JSON value, nested at most ${MAX_PAYLOAD_DEPTH} levels, without \\u0000.`,
  )

// PostgreSQL has no year 0 (ISO 8601 year 0000 is 1 BC): '0000-…' would fail in the database.
const runAtSchema = z.iso
  .datetime({ offset: true, error: 'expected an ISO 8601 date-time' })
  .refine((v) => !v.startsWith('0000'), { error: 'expected a year from 0001' })

export const createJobBodySchema = z.strictObject(
  {
    type: z.string({ error: 'expected a string' }).regex(JOB_TYPE_PATTERN, {
      error:
        'expected 1–128 characters: letters, digits and _ . : / - (starting with a letter or digit)',
    }),
    payload: payloadSchema.optional(),
    max_attempts: z.number().int().min(1).max(1000).optional(),
    priority: z.number().int().min(-1000).max(1000).optional(),
    run_at: runAtSchema.optional(),
  },
  {
    error: (issue) =>
      issue.code === 'unrecognized_keys'
        ? `unknown field(s): ${issue.keys.join(', ')}`
        : 'expected a JSON object',
  },
)
export type CreateJobBody = z.output<typeof createJobBodySchema>

export const idempotencyKeySchema = z
  .string()
  .min(1)
  .max(256)
  .regex(/^[\x21-\x7e]+$/, { error: 'expected printable ASCII without spaces' })

export const listJobsQuerySchema = strictQuery({
  status: z.enum(JOB_STATUSES, { error: `expected one of ${JOB_STATUSES.join(', ')}` }).optional(),
  type: z
    .string({ error: 'expected a single job type' })
    .regex(JOB_TYPE_PATTERN, { error: 'expected a job type' })
    .optional(),
  limit: z
    .string({ error: 'expected a whole number from 1 to 100' })
    .regex(/^\d{1,4}$/, { error: 'expected a whole number from 1 to 100' })
    .transform(Number)
    .pipe(
      z.number().min(1, { error: 'must be at least 1' }).max(100, { error: 'must be at most 100' }),
    )
    .optional(),
  cursor: z
    .string({ error: 'expected a single cursor' })
    .max(200, { error: 'not a cursor from this API' })
    .optional(),
  [QUERY.token]: queryToken,
})
