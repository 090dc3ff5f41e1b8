// Routes for operators and API readers: /metrics (Prometheus; a bearer token when
// METRICS_TOKEN is set), /openapi.json, and /docs in development. None of them is under
// /v1, so none needs a user token.
import { createHash, timingSafeEqual } from 'node:crypto'
import { Router, type Request } from 'express'
import type { Config } from '../../config/index.js'
import { UnauthorizedError } from '../../errors.js'
import type { Metrics } from '../../telemetry/metrics.js'
import { renderDocsPage } from '../docs-page.js'
import { buildOpenApiDocument } from '../openapi.js'

export interface OperationsRouteDeps {
  config: Pick<
    Config,
    | 'METRICS_ENABLED'
    | 'METRICS_TOKEN'
    | 'LONGPOLL_MAX_SECONDS'
    | 'COMPAT_ROUTES'
    | 'livePage'
    | 'isProduction'
  >
  metrics?: Pick<Metrics, 'metrics' | 'contentType'>
}

export function operationsRoutes({ config, metrics }: OperationsRouteDeps): Router {
  const router = Router()
  // Built once: the document only depends on the configuration.
  const document = buildOpenApiDocument(config)
  const body = JSON.stringify(document)

  if (config.METRICS_ENABLED && metrics) {
    const expected = config.METRICS_TOKEN === undefined ? undefined : digest(config.METRICS_TOKEN)
    router.get('/metrics', async (req, res) => {
      if (expected && !timingSafeEqual(digest(bearerOf(req)), expected)) {
        throw new UnauthorizedError('The metrics need the METRICS_TOKEN as a bearer token.')
      }
      const text = await metrics.metrics()
      res.set('content-type', metrics.contentType).set('cache-control', 'no-store').send(text)
    })
  }

  router.get('/openapi.json', (_req, res) => {
    res.set('content-type', 'application/json; charset=utf-8').send(body)
  })

  if (config.livePage || !config.isProduction) {
    const page = renderDocsPage(document)
    router.get('/docs', (_req, res) => {
      res.set('content-type', 'text/html; charset=utf-8').send(page)
    })
  }
  return router
}

function bearerOf(req: Request): string {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '')
  return match?.[1] ?? ''
}

/** Hashing first makes both sides 32 bytes, so timingSafeEqual never sees a length mismatch. */
function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest()
}
