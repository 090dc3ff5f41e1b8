// The express application for everything the edge does not serve (src/http/edge.ts): create,
// list and cancel jobs, health, metrics, the OpenAPI document and the dev pages. It shares
// the edge's request id, security headers, CORS headers (src/http/cors.ts), request log line, admission (authentication and
// the one rate-limit check) and problem writer.
import express, { type Express, type Request, type Router } from 'express'
import type { Config } from '../config/index.js'
import { API_PREFIX } from '../protocol/http.js'
import type { Logger } from '../telemetry/logger.js'
import type { Metrics } from '../telemetry/metrics.js'
import type { Admitter } from './admission.js'
import { findPrincipal, setPrincipal, tokenSourceFor } from './authenticate.js'
import { clientAddressOf, type TrustProxy } from './client-address.js'
import type { Cors } from './cors.js'
import { notFoundHandler, problemHandler } from './problem.js'
import { logCompleted, startTrace } from './request-log.js'
import { operationsRoutes, type OperationsRouteDeps } from './routes/operations.js'
import { setHeaders, type HeaderList } from './security-headers.js'

export interface ReadinessReport {
  ready: boolean
  checks: Record<string, 'ok' | 'degraded' | 'failing'>
}

export interface AppDeps {
  config: Pick<Config, 'BODY_LIMIT_BYTES' | 'isProduction'> & OperationsRouteDeps['config']
  /** Authentication and the request limits, shared with the edge and WebSocket upgrades. */
  admitter: Admitter
  /** Which address is the client (TRUST_PROXY), decided as the edge decides it. */
  trustProxy: TrustProxy
  securityHeaders: HeaderList
  /** CORS_ORIGINS's policy, shared with the edge (which answers every preflight). */
  cors: Cors
  logger: Logger
  readiness: () => Promise<ReadinessReport>
  /** Routers mounted in order after the health routes (jobs, dev page …). */
  routers: Router[]
  /** Served at /metrics (unless METRICS_ENABLED=false). */
  metrics?: Pick<Metrics, 'metrics' | 'contentType'>
}

/** Polled by orchestrators and scrapers: not worth a log line each. */
const UNLOGGED = new Set(['/healthz', '/readyz', '/metrics'])

export function createApp(deps: AppDeps): Express {
  const app = express()
  app.disable('x-powered-by')
  app.set('trust proxy', deps.trustProxy)
  app.set('etag', false)
  app.set('query parser', 'simple')

  app.use((req, res, next) => {
    const trace = startTrace(req, res)
    setHeaders(res, deps.securityHeaders)
    const cors = deps.cors.headersFor(req.headers.origin)
    for (let i = 0; i < cors.length; i += 2) res.setHeader(cors[i]!, cors[i + 1]!)
    if (!UNLOGGED.has(req.url)) {
      // The route template and the caller are known once the request was routed.
      res.once('close', () => {
        const route = (req.route as { path?: unknown } | undefined)?.path
        if (typeof route === 'string') trace.route = route
        trace.principal = findPrincipal(req)
        trace.clientAddress = clientAddressOf(req, deps.trustProxy)
        logCompleted(
          deps.logger,
          req,
          trace,
          res.statusCode,
          !req.readableAborted && res.writableEnded,
        )
      })
    }
    next()
  })

  app.get('/healthz', (_req, res) => {
    res.set('cache-control', 'no-store').json({ status: 'ok' })
  })
  app.get('/readyz', async (_req, res) => {
    const report = await deps.readiness()
    res
      .status(report.ready ? 200 : 503)
      .set('cache-control', 'no-store')
      .json({ status: report.ready ? 'ready' : 'not-ready', checks: report.checks })
  })
  app.use(operationsRoutes({ config: deps.config, metrics: deps.metrics }))

  app.use(API_PREFIX, async (req: Request, res, next) => {
    const { principal, rateHeaders } = await deps.admitter.admit(req, tokenSourceFor(req), req.ip)
    for (const [name, value] of rateHeaders) res.setHeader(name, value)
    setPrincipal(req, principal)
    next()
  })
  app.use(
    express.json({ limit: deps.config.BODY_LIMIT_BYTES, strict: true, type: 'application/json' }),
  )
  for (const router of deps.routers) app.use(router)

  app.use(notFoundHandler)
  app.use(problemHandler(deps.logger))
  return app
}
