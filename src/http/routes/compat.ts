// The compatibility routes (docs/compat.md): the paths and shapes of the systems jobwire
// replaces, each section turned on by COMPAT_ROUTES. They are edge routes like v1's hot
// routes and reuse their handlers — the same admission, RLS read, hub watch, writers and
// problem writer — with a different body or message vocabulary:
//   jobs       GET /jobs/:id (document; ?stream=true SSE patches; WebSocket upgrade)
//   api-jobs   GET /api/jobs/:id, GET /api/jobs/:id/events (admins)
//   api-queue  GET /api/queue/poll/:id, GET /api/queue/poll/:id/wait
//   api-v1     GET /api/v1/jobs/:id/stream, GET /api/v1/jobs/:id/status
import type { IncomingMessage } from 'node:http'
import type { ParsedUrlQuery } from 'node:querystring'
import { fetchJobsByIds } from '../../db/jobs.js'
import type { Db } from '../../db/pool.js'
import type { Principal } from '../../db/tenant-transaction.js'
import { JobNotFoundError } from '../../errors.js'
import {
  apiJobsBody,
  apiQueueBody,
  apiV1StatusBody,
  type CompatSection,
} from '../../protocol/compat.js'
import { API_JOBS_FRAMES, API_V1_FRAMES } from '../../transports/compat-formats.js'
import {
  routePattern,
  wantsStream,
  type EdgeHandler,
  type EdgeRoute,
  type EdgeUpgradeRoute,
} from '../edge.js'
import { jobParamsSchema } from '../schemas.js'
import { parseRequest } from '../validation.js'
import { documentHandler } from './jobs.js'
import { jobStreamHandler, waitHandler, type StreamRouteDeps } from './streams.js'

export interface CompatRouteDeps extends StreamRouteDeps {
  sections: readonly CompatSection[]
  /** COMPAT_ANONYMOUS_READ: the `jobs` routes read one job by its UUID without a token. */
  anonymousRead: boolean
}

export interface CompatRoutes {
  routes: EdgeRoute[]
  upgradeRoutes: EdgeUpgradeRoute[]
}

/** Every compatibility route as `METHOD path` (the OpenAPI test checks they are documented). */
export const COMPAT_EDGE_ROUTES = [
  'get /jobs/{id}',
  'get /api/jobs/{id}',
  'get /api/jobs/{id}/events',
  'get /api/queue/poll/{id}',
  'get /api/queue/poll/{id}/wait',
  'get /api/v1/jobs/{id}/stream',
  'get /api/v1/jobs/{id}/status',
] as const

function route(
  template: string,
  tokenSource: EdgeRoute['tokenSource'],
  handler: EdgeHandler,
  anonymous?: EdgeRoute['anonymous'],
): EdgeRoute {
  return { template, pattern: routePattern(template), tokenSource, handler, anonymous }
}

export function compatRoutes(deps: CompatRouteDeps): CompatRoutes {
  const { db, sections } = deps
  const routes: EdgeRoute[] = []
  const upgradeRoutes: EdgeUpgradeRoute[] = []
  if (sections.includes('jobs')) {
    const anonymous = deps.anonymousRead ? anonymousReader(db) : undefined
    const document = documentHandler(db)
    const stream = jobStreamHandler(deps)
    const jobs = (request: { req: IncomingMessage; query: ParsedUrlQuery }) =>
      wantsStream(request.req, request.query) ? stream : document
    routes.push(
      route('/jobs/:id', 'header-or-query', (request) => jobs(request)(request), anonymous),
    )
    upgradeRoutes.push({ template: '/jobs/:id', pattern: routePattern('/jobs/:id'), anonymous })
  }
  if (sections.includes('api-jobs')) {
    routes.push(
      route('/api/jobs/:id', 'header', documentHandler(db, apiJobsBody)),
      route(
        '/api/jobs/:id/events',
        'header-or-query',
        jobStreamHandler(deps, { frames: API_JOBS_FRAMES, adminOnly: true }),
      ),
    )
  }
  if (sections.includes('api-queue')) {
    routes.push(
      route('/api/queue/poll/:id', 'header', documentHandler(db, apiQueueBody)),
      route('/api/queue/poll/:id/wait', 'header-or-query', waitHandler(deps, apiQueueBody)),
    )
  }
  if (sections.includes('api-v1')) {
    routes.push(
      route(
        '/api/v1/jobs/:id/stream',
        'header-or-query',
        jobStreamHandler(deps, { frames: API_V1_FRAMES }),
      ),
      route('/api/v1/jobs/:id/status', 'header-or-query', documentHandler(db, apiV1StatusBody)),
    )
  }
  return { routes, upgradeRoutes }
}

/**
 * COMPAT_ANONYMOUS_READ: the job's UUID is the capability. The job's tenant is looked up,
 * and the request then reads through the same RLS read as any other, as a principal that
 * opens that one job and nothing else (like a watch token: read-only, one job).
 */
function anonymousReader(db: Db): (rawId: string) => Promise<Principal> {
  return async (rawId) => {
    const { id } = parseRequest(jobParamsSchema, { id: rawId }, 'path')
    const [row] = await fetchJobsByIds(db, [id])
    if (!row) throw new JobNotFoundError(id)
    return { tenantId: row.tenant_id, userId: 'anonymous', role: 'admin', jobId: row.id }
  }
}
