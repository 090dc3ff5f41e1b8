// Routes for operators: /metrics (Prometheus; a bearer token when METRICS_TOKEN is set).
// Not under /v1, so no user token is needed.
import { createHash, timingSafeEqual } from 'node:crypto'
import { Router, type Request } from 'express'
import type { Config } from '../../config/index.js'
import { UnauthorizedError } from '../../errors.js'
import type { Metrics } from '../../telemetry/metrics.js'

export interface OperationsRouteDeps {
  config: Pick<Config, 'METRICS_ENABLED' | 'METRICS_TOKEN'>
  metrics?: Pick<Metrics, 'metrics' | 'contentType'>
}

export function operationsRoutes({ config, metrics }: OperationsRouteDeps): Router {
  const router = Router()

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
