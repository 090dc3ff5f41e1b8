// Everything that faces HTTP clients, wired once: the admission (authentication and the one
// rate-limit check), the stream caps, the security headers, the edge with its hot-route
// handlers and WebSocket endpoints, and express for the rest. src/http/server.ts listens
// with it.
import type { Router } from 'express'
import type { Express } from 'express'
import type { Config } from '../config/index.js'
import type { Db } from '../db/pool.js'
import type { Hub } from '../events/hub.js'
import type { Logger } from '../telemetry/logger.js'
import type { Metrics } from '../telemetry/metrics.js'
import type { StreamRegistry } from '../transports/stream-registry.js'
import { createAdmitter } from './admission.js'
import { createApp, type ReadinessReport } from './app.js'
import type { Authenticator } from './auth.js'
import { compileTrustProxy } from './client-address.js'
import { createEdge } from './edge.js'
import { createRateLimits, type RateLimitOptions } from './rate-limit.js'
import { clientScriptRouter } from './routes/client-script.js'
import { compatRoutes } from './routes/compat.js'
import { documentHandler, jobRoutes } from './routes/jobs.js'
import { eventsHandler } from './routes/multiplexed.js'
import { jobStreamHandler, waitHandler } from './routes/streams.js'
import { jobParamsSchema } from './schemas.js'
import { createCors } from './cors.js'
import { securityHeaders } from './security-headers.js'
import type { HttpHandlers } from './server.js'
import { countingRefusals, MemoryStreamSlots, type StreamSlots } from './stream-slots.js'
import { parseRequest } from './validation.js'
import { createWebSockets } from './ws-server.js'

export interface FrontendDeps {
  config: Readonly<Config>
  logger: Logger
  db: Db
  hub: Hub
  registry: StreamRegistry
  auth: Authenticator
  metrics: Metrics
  readiness(): Promise<ReadinessReport>
  /** Express routers mounted after the API's (the live page in development). */
  routers: Router[]
  /** Where the counters live: this process's memory unless given (cluster mode, Redis). */
  stores?: { rateLimits?: RateLimitOptions['stores']; streamSlots?: StreamSlots }
}

export interface Frontend extends HttpHandlers {
  /** The express side, for what is not a hot route. */
  app: Express
  /** Shutdown: streams end (clients resume elsewhere), parked waiters get the document. */
  closeStreams(): void
}

export function createFrontend(deps: FrontendDeps): Frontend {
  const { config, logger, db, hub, registry, auth, metrics } = deps
  const rateLimits = createRateLimits({
    config,
    stores: deps.stores?.rateLimits,
    onRejected: metrics.rateLimitRejected,
  })
  const admitter = createAdmitter(auth, rateLimits)
  const trustProxy = compileTrustProxy(config.TRUST_PROXY)
  const headers = securityHeaders(config)
  const cors = createCors(config.corsOrigins)
  const streamDeps = {
    db,
    hub,
    registry,
    slots: countingRefusals(
      deps.stores?.streamSlots ?? new MemoryStreamSlots(config),
      metrics.capRejected,
    ),
  }
  // The multiplexed writers (SSE /v1/events, WebSocket) report one write per message;
  // heartbeats and pings go around it, so each write is one delivered event.
  const countMessage = (transport: 'sse' | 'ws', bytes: number) => {
    metrics.streamBytes(transport, bytes)
    metrics.eventDelivered(transport)
  }
  const streamHooks = {
    config,
    onStreamBytes: metrics.streamBytes,
    onEventDelivered: metrics.eventDelivered,
  }
  const webSockets = createWebSockets({
    ...streamDeps,
    logger,
    config,
    rateLimits,
    onWsBytes: (bytes) => countMessage('ws', bytes),
  })
  // COMPAT_ROUTES (docs/compat.md): the same handlers and hooks, other paths and shapes.
  const compat = compatRoutes({
    ...streamDeps,
    ...streamHooks,
    sections: config.COMPAT_ROUTES,
    anonymousRead: config.COMPAT_ANONYMOUS_READ,
  })
  const edge = createEdge({
    admitter,
    logger,
    securityHeaders: headers,
    cors,
    trustProxy,
    handlers: {
      document: documentHandler(db),
      jobStream: jobStreamHandler({ ...streamDeps, ...streamHooks }),
      wait: waitHandler({ ...streamDeps, ...streamHooks }),
      events: eventsHandler({ ...streamDeps, config, onStreamBytes: countMessage, rateLimits }),
    },
    parseJobId: (id) => parseRequest(jobParamsSchema, { id }, 'path').id,
    upgrade: webSockets.upgrade,
    routes: compat.routes,
    upgradeRoutes: compat.upgradeRoutes,
  })
  const app = createApp({
    config,
    admitter,
    trustProxy,
    securityHeaders: headers,
    cors,
    logger,
    readiness: deps.readiness,
    metrics,
    routers: [
      jobRoutes({ db, auth }),
      clientScriptRouter({ isProduction: config.isProduction }),
      ...deps.routers,
    ],
  })
  return {
    app,
    request: edge.request,
    fallback: app,
    upgrade: edge.upgrade,
    closeStreams() {
      registry.closeAll()
      webSockets.close()
    },
  }
}
