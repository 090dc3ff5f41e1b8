// REST routes on jobs: create, list and cancel (express), and the document read that the edge
// serves (documentHandler). Streams and long-poll hang off the same paths in their own
// modules; this one is plain request/response.
import { createHash } from 'node:crypto'
import { Router, type Response } from 'express'
import { z } from 'zod'
import {
  cancelQueuedJob,
  findJobByIdempotencyKey,
  insertJob,
  listVisibleJobs,
  lockVisibleJob,
  requestCancel,
} from '../../db/jobs.js'
import type { Db } from '../../db/pool.js'
import { readVisibleJob, withTenant, type Principal } from '../../db/tenant-transaction.js'
import {
  IdempotencyConflictError,
  JobNotFoundError,
  JobTerminalError,
  UnsupportedMediaTypeError,
} from '../../errors.js'
import { toJobDocument } from '../../events/document.js'
import { API_PREFIX, HEADER, QUERY } from '../../protocol/http.js'
import { isTerminalStatus, type JobDocument } from '../../protocol/job.js'
import { assertCanRead, assertUserToken, type Authenticator } from '../auth.js'
import { decodeCursor, encodeCursor } from '../cursor.js'
import {
  createJobBodySchema,
  idempotencyKeySchema,
  jobParamsSchema,
  noQuerySchema,
  listJobsQuerySchema,
  queryToken,
  strictQuery,
} from '../schemas.js'
import { parseRequest } from '../validation.js'
import { principalOf } from '../authenticate.js'
import type { EdgeHandler } from '../edge.js'

export interface JobRoutesDeps {
  db: Db
  auth: Authenticator
}

/** A job changes at any moment: caches must revalidate, and never share it between users. */
const CACHE_CONTROL = 'private, no-cache'

export function etagOf(version: number): string {
  return `"${version}"`
}

/** True when If-None-Match names this version (or is `*`). */
function matchesEtag(header: string | undefined, version: number): boolean {
  if (!header) return false
  const etag = etagOf(version)
  return header.split(',').some((tag) => {
    const t = tag.trim()
    return t === '*' || t === etag || t === `W/${etag}`
  })
}

function sendDocument(res: Response, doc: JobDocument, status = 200): void {
  res.status(status).set('etag', etagOf(doc.version)).set('cache-control', CACHE_CONTROL).json(doc)
}

export async function readJobOr404(
  db: Db,
  principal: Principal,
  jobId: string,
): Promise<JobDocument> {
  assertCanRead(principal, jobId)
  const row = await readVisibleJob(db, principal, jobId)
  if (!row) throw new JobNotFoundError(jobId)
  return toJobDocument(row)
}

/** The document's query: `?stream=false` (true would have made it a stream), the token, `_`. */
const documentQuerySchema = strictQuery({
  [QUERY.stream]: z.enum(['false', '0'], { error: 'expected true or false' }).optional(),
  [QUERY.token]: queryToken,
})

/**
 * `GET /v1/jobs/:id`, served by the edge: the document with its ETag, or 304 when
 * If-None-Match names its version. The same headers express's res.json() wrote. `render`
 * shapes the body (a compatibility route's, docs/compat.md); a function of the document,
 * so the version stays a valid ETag.
 */
export function documentHandler(
  db: Db,
  render: (doc: JobDocument) => unknown = (doc) => doc,
): EdgeHandler {
  return async ({ req, principal, id: rawId, query, writeHead }) => {
    const { id } = parseRequest(jobParamsSchema, { id: rawId }, 'path')
    parseRequest(documentQuerySchema, query, 'query')
    const doc = await readJobOr404(db, principal, id)
    const etag = etagOf(doc.version)
    if (matchesEtag(req.headers['if-none-match'], doc.version)) {
      // A 304 repeats the validators and caching headers the 200 would carry (RFC 9110 §15.4.5).
      writeHead(304, ['etag', etag, 'cache-control', CACHE_CONTROL]).end()
      return
    }
    const body = JSON.stringify(render(doc))
    writeHead(200, [
      'content-type',
      'application/json; charset=utf-8',
      'content-length',
      String(Buffer.byteLength(body)),
      'etag',
      etag,
      'cache-control',
      CACHE_CONTROL,
    ]).end(body)
  }
}

export function jobRoutes({ db, auth }: JobRoutesDeps): Router {
  const router = Router()

  router.post(`${API_PREFIX}/jobs`, async (req, res) => {
    const principal = principalOf(req)
    assertUserToken(principal, 'create jobs')
    if (!req.is('application/json')) {
      throw new UnsupportedMediaTypeError(
        'Send the job as JSON with "Content-Type: application/json".',
      )
    }
    parseRequest(noQuerySchema, req.query, 'query')
    const body = parseRequest(createJobBodySchema, req.body, 'body')
    const keyHeader = req.headers[HEADER.idempotencyKey]
    const idempotencyKey =
      keyHeader === undefined ? undefined : parseRequest(idempotencyKeySchema, keyHeader, 'header')
    const requestHash = createHash('sha256').update(canonicalJson(body)).digest('base64url')

    const { row, replayed } = await withTenant(db, principal, async (trx) => {
      const inserted = await insertJob(trx, {
        tenantId: principal.tenantId,
        ownerId: principal.userId,
        type: body.type,
        payload: body.payload ?? {},
        maxAttempts: body.max_attempts,
        priority: body.priority,
        runAt: body.run_at,
        idempotencyKey,
        requestHash: idempotencyKey === undefined ? undefined : requestHash,
      })
      if (inserted) return { row: inserted, replayed: false }
      // The caller used this key before (keys are per owner, docs/decisions.md): a retry of
      // the same request returns the same job.
      const existing = await findJobByIdempotencyKey(
        trx,
        { tenantId: principal.tenantId, ownerId: principal.userId },
        idempotencyKey!,
      )
      if (!existing || existing.request_hash !== requestHash) {
        throw new IdempotencyConflictError(
          'This Idempotency-Key was already used for a different request; use a new key for a new job.',
        )
      }
      return { row: existing, replayed: true }
    })
    const doc = toJobDocument(row)
    res.location(`${API_PREFIX}/jobs/${doc.id}`)
    if (replayed) res.set(HEADER.idempotentReplayed, 'true')
    res
      .status(replayed ? 200 : 201)
      .set('etag', etagOf(doc.version))
      // The caller owns the job, replayed or not: keys are per owner.
      .json({ ...doc, watch_token: auth.issueWatchToken(principal, doc.id) })
  })

  router.get(`${API_PREFIX}/jobs`, async (req, res) => {
    const principal = principalOf(req)
    assertUserToken(principal, 'list jobs')
    const query = parseRequest(listJobsQuerySchema, req.query, 'query')
    const limit = query.limit ?? 20
    const rows = await withTenant(db, principal, (trx) =>
      listVisibleJobs(trx, {
        status: query.status,
        type: query.type,
        limit: limit + 1,
        after: query.cursor === undefined ? undefined : decodeCursor(query.cursor),
      }),
    )
    const page = rows.slice(0, limit)
    const last = page[page.length - 1]
    res.set('cache-control', CACHE_CONTROL).json({
      data: page.map(toJobDocument),
      next_cursor:
        rows.length > limit && last
          ? encodeCursor({ createdAt: last.cursor_created_at, id: last.id })
          : null,
    })
  })

  router.post(`${API_PREFIX}/jobs/:id/cancel`, async (req, res) => {
    const principal = principalOf(req)
    assertUserToken(principal, 'cancel jobs')
    const { id } = parseRequest(jobParamsSchema, req.params, 'path')
    parseRequest(noQuerySchema, req.query, 'query')
    const { row, status } = await withTenant(db, principal, async (trx) => {
      const current = await lockVisibleJob(trx, id)
      if (!current) throw new JobNotFoundError(id)
      if (isTerminalStatus(current.status)) {
        throw new JobTerminalError(
          `The job is already ${current.status}; there is nothing to cancel.`,
        )
      }
      if (current.status === 'queued') return { row: await cancelQueuedJob(trx, id), status: 200 }
      // Running: ask its worker to stop; it sees cancel_requested and marks the job cancelled.
      if (current.cancel_requested) return { row: current, status: 202 }
      return { row: await requestCancel(trx, id), status: 202 }
    })
    sendDocument(res, toJobDocument(row), status)
  })

  return router
}

/** JSON with sorted keys, so that {a,b} and {b,a} hash the same. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`
  }
  return JSON.stringify(value)
}
