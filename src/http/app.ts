// The express application: middleware, routes and the problem+json error mapper. Streams
// are mounted by the routes they extend; main.ts adds the WebSocket upgrade on the server.
import { randomUUID } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import express, { type Express, type Router } from 'express'
import helmet from 'helmet'
import { pinoHttp } from 'pino-http'
import type { Config } from '../config/index.js'
import { API_PREFIX, HEADER } from '../protocol/http.js'
import { redactUrl, serializeError, type Logger } from '../telemetry/logger.js'
import type { Metrics } from '../telemetry/metrics.js'
import { findPrincipal } from './authenticate.js'
import { clientAddressOf, compileTrustProxy } from './client-address.js'
import type { RateLimits } from './rate-limit.js'
import { notFoundHandler, problemHandler } from './problem.js'
import { operationsRoutes, type OperationsRouteDeps } from './routes/operations.js'

export interface ReadinessReport {
  ready: boolean
  checks: Record<string, 'ok' | 'degraded' | 'failing'>
}

export interface AppDeps {
  config: Pick<Config, 'BODY_LIMIT_BYTES' | 'TRUST_PROXY' | 'isProduction'> &
    OperationsRouteDeps['config']
  /** Authentication and request limits for /v1, shared with the WebSocket upgrade handler. */
  rateLimits: RateLimits
  logger: Logger
  readiness: () => Promise<ReadinessReport>
  /** Routers mounted in order after the health routes (jobs, streams, dev page …). */
  routers: Router[]
  /** Served at /metrics (unless METRICS_ENABLED=false). */
  metrics?: Pick<Metrics, 'metrics' | 'contentType'>
}

const REQUEST_ID = /^[\w\-.:]{1,128}$/

export function createApp(deps: AppDeps): Express {
  const app = express()
  app.disable('x-powered-by')
  // Which address is the client (req.ip, the per-IP limit, the log): TRUST_PROXY, decided
  // in one place for express and the raw upgrade path alike.
  const trustProxy = compileTrustProxy(deps.config.TRUST_PROXY)
  app.set('trust proxy', trustProxy)
  app.set('etag', false)
  app.set('query parser', 'simple')

  app.use(
    pinoHttp({
      logger: deps.logger,
      genReqId: (req: IncomingMessage, res: ServerResponse) => {
        const given = req.headers[HEADER.requestId]
        const id = typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID()
        res.setHeader(HEADER.requestId, id)
        return id
      },
      // pino-http hands these pino's standard serializations; only the listed fields are
      // kept (never the headers), and the URL loses its tokens. Behind a trusted proxy the
      // client's own address is logged too.
      serializers: {
        req: (req: {
          id?: unknown
          method?: string
          url?: string
          remoteAddress?: string
          raw?: IncomingMessage
        }) => {
          const client = req.raw && clientAddressOf(req.raw, trustProxy)
          return {
            id: req.id,
            method: req.method,
            url: redactUrl(req.url),
            remoteAddress: req.remoteAddress,
            ...(client !== undefined && client !== req.remoteAddress
              ? { clientAddress: client }
              : {}),
          }
        },
        res: (res: ServerResponse) => ({ statusCode: res.statusCode }),
        err: serializeError,
      },
      // Called again when the response ends: by then the principal and the matched route
      // template (`/v1/jobs/:id`, not the URL with its ids) are known.
      customProps: (req) => {
        const route = (req as express.Request).route as { path?: unknown } | undefined
        const props: Record<string, unknown> =
          typeof route?.path === 'string' ? { route: route.path } : {}
        // Called when the request starts too, before authentication: no throwing here (a
        // thrown error per request cost ~3 % of CPU in the benchmarks).
        const p = findPrincipal(req as express.Request)
        return p ? { ...props, tenantId: p.tenantId, userId: p.userId } : props
      },
      customLogLevel: (_req, res, err) => (err || res.statusCode >= 500 ? 'error' : 'info'),
      autoLogging: {
        ignore: (req) => req.url === '/healthz' || req.url === '/readyz' || req.url === '/metrics',
      },
    }),
  )
  app.use(
    helmet({
      contentSecurityPolicy: {
        directives: {
          'script-src': ["'self'"],
          'connect-src': ["'self'"],
          // Over plain http (development on a LAN address) the browser would otherwise rewrite
          // the page's own requests to https and break it.
          'upgrade-insecure-requests': deps.config.isProduction ? [] : null,
        },
      },
      // HSTS pins a host to https for a year: only where it is served over https.
      strictTransportSecurity: deps.config.isProduction,
    }),
  )

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

  app.use(API_PREFIX, ...deps.rateLimits.middleware)
  app.use(
    express.json({ limit: deps.config.BODY_LIMIT_BYTES, strict: true, type: 'application/json' }),
  )
  for (const router of deps.routers) app.use(router)

  app.use(notFoundHandler)
  app.use(problemHandler(deps.logger))
  return app
}
