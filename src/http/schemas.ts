// Request schemas (zod). The same schemas validate requests and, later, generate the
// OpenAPI document. Unknown body keys and unknown query parameters are rejected: a typo
// must not silently do nothing.
import { z } from 'zod'
import { JOB_STATUSES } from '../protocol/job.js'

export const JOB_TYPE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$/

export const jobIdSchema = z.guid({ error: 'expected a UUID' }).transform((id) => id.toLowerCase())

export const jobParamsSchema = z.object({ id: jobIdSchema })

export const createJobBodySchema = z.strictObject(
  {
    type: z.string({ error: 'expected a string' }).regex(JOB_TYPE_PATTERN, {
      error:
        'expected 1–128 characters: letters, digits and _ . : / - (starting with a letter or digit)',
    }),
    payload: z.json().optional(),
    max_attempts: z.number().int().min(1).max(1000).optional(),
    priority: z.number().int().min(-1000).max(1000).optional(),
    run_at: z.iso.datetime({ offset: true, error: 'expected an ISO 8601 date-time' }).optional(),
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

export const listJobsQuerySchema = z.strictObject(
  {
    status: z
      .enum(JOB_STATUSES, { error: `expected one of ${JOB_STATUSES.join(', ')}` })
      .optional(),
    type: z
      .string({ error: 'expected a single job type' })
      .regex(JOB_TYPE_PATTERN, { error: 'expected a job type' })
      .optional(),
    limit: z
      .string({ error: 'expected a whole number from 1 to 100' })
      .regex(/^\d{1,4}$/, { error: 'expected a whole number from 1 to 100' })
      .transform(Number)
      .pipe(
        z
          .number()
          .min(1, { error: 'must be at least 1' })
          .max(100, { error: 'must be at most 100' }),
      )
      .optional(),
    cursor: z
      .string({ error: 'expected a single cursor' })
      .max(200, { error: 'not a cursor from this API' })
      .optional(),
  },
  {
    error: (issue) =>
      issue.code === 'unrecognized_keys'
        ? `unknown parameter(s): ${issue.keys.join(', ')}`
        : undefined,
  },
)

export const getJobQuerySchema = z.object({
  stream: z.enum(['true', 'false', '1', '0'], { error: 'expected true or false' }).optional(),
})
