// /openapi.json: a valid OpenAPI 3.1 document that lists exactly the routes the service
// answers: the edge's hot routes (WebSocket included) and the express router's.
import { Validator } from '@seriousme/openapi-schema-validator'
import type { Express } from 'express'
import { EDGE_ROUTES } from '../../src/http/edge.js'
import { COMPAT_EDGE_ROUTES } from '../../src/http/routes/compat.js'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import { startTestService, type TestService } from '../helpers/service.js'

interface Operation {
  security?: Array<Record<string, string[]>>
  parameters?: Array<{ name: string; in: string }>
  responses: Record<string, { content?: Record<string, { schema?: unknown }> }>
}
interface Document {
  openapi: string
  paths: Record<string, Record<string, Operation>>
  components: { schemas: Record<string, unknown>; securitySchemes: Record<string, unknown> }
}

let database: TestDatabase
let service: TestService
let doc: Document

beforeAll(async () => {
  database = await createTestDatabase()
  service = await startTestService(database.url)
  const res = await service.fetch('/openapi.json')
  expect(res.status).toBe(200)
  expect(res.headers.get('content-type')).toMatch(/^application\/json/)
  doc = (await res.json()) as Document
})
afterAll(async () => {
  await service?.close()
  await database?.drop()
})

interface RouterLayer {
  route?: { path: string | string[]; methods: Record<string, boolean> }
  handle?: { stack?: RouterLayer[] }
}

/** Every `METHOD /path` the app routes, with express `:id` written as OpenAPI `{id}`. */
function expressRoutes(app: Express): string[] {
  const found = new Set<string>()
  const walk = (stack: RouterLayer[]) => {
    for (const layer of stack) {
      if (layer.route) {
        const paths = Array.isArray(layer.route.path) ? layer.route.path : [layer.route.path]
        for (const path of paths)
          for (const [method, isOn] of Object.entries(layer.route.methods))
            if (isOn && method !== '_all') found.add(`${method} ${path.replace(/:(\w+)/g, '{$1}')}`)
      } else if (layer.handle?.stack) {
        walk(layer.handle.stack) // routers are mounted at the root
      }
    }
  }
  walk((app as unknown as { router: { stack: RouterLayer[] } }).router.stack)
  return [...found].sort()
}

function documentedRoutes(document = doc): string[] {
  return Object.entries(document.paths)
    .flatMap(([path, item]) => Object.keys(item).map((method) => `${method} ${path}`))
    .sort()
}

it('is a valid OpenAPI 3.1 document', async () => {
  expect(doc.openapi).toMatch(/^3\.1\./)
  const result = await new Validator().validate(
    doc as unknown as Parameters<Validator['validate']>[0],
  )
  expect(result.errors).toBeUndefined()
  expect(result.valid).toBe(true)
})

it('documents every route the edge and express serve, and no route they lack', () => {
  const routed = [...new Set([...expressRoutes(service.app), ...EDGE_ROUTES])].sort()
  expect(routed).toEqual(
    expect.arrayContaining(['get /healthz', 'post /v1/jobs', 'get /v1/jobs/{id}/wait']),
  )
  expect(documentedRoutes()).toEqual(routed)
})

it('documents the compatibility routes exactly when COMPAT_ROUTES turns them on', async () => {
  expect(documentedRoutes().filter((r) => !r.includes(' /v1/') && r.includes('jobs'))).toEqual([])
  const compat = await startTestService(database.url, { COMPAT_ROUTES: 'all' })
  try {
    const compatDoc = (await (await compat.fetch('/openapi.json')).json()) as Document
    const result = await new Validator().validate(
      compatDoc as unknown as Parameters<Validator['validate']>[0],
    )
    expect(result.errors).toBeUndefined()
    const routed = [
      ...new Set([...expressRoutes(compat.app), ...EDGE_ROUTES, ...COMPAT_EDGE_ROUTES]),
    ].sort()
    expect(documentedRoutes(compatDoc)).toEqual(routed)
    expect(compatDoc.paths['/api/jobs/{id}/events']!.get!.security).toEqual([
      { bearerAuth: [] },
      { queryToken: [] },
    ])
  } finally {
    await compat.close()
  }
})

it('describes the job document, problems and both ways to send a token', () => {
  expect(Object.keys(doc.components.schemas)).toEqual(
    expect.arrayContaining(['JobDocument', 'Problem', 'JobList']),
  )
  expect(doc.components.securitySchemes).toMatchObject({
    bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' },
    queryToken: { type: 'apiKey', in: 'query', name: 'token' },
  })
  for (const path of ['/v1/jobs/{id}/events', '/v1/jobs/{id}/wait', '/v1/events', '/v1/ws'])
    expect(doc.paths[path]!.get!.security).toEqual([{ bearerAuth: [] }, { queryToken: [] }])
  // REST routes take the header only.
  expect(doc.paths['/v1/jobs']!.post!.security).toBeUndefined()
  const notFound = doc.paths['/v1/jobs/{id}']!.get!.responses['404']!
  expect(notFound.content!['application/problem+json']!.schema).toEqual({
    $ref: '#/components/schemas/Problem',
  })
})

it('generates parameters from the request schemas', () => {
  const names = (path: string) =>
    doc.paths[path]!.get!.parameters!.filter((p) => p.in === 'query').map((p) => p.name)
  expect(names('/v1/jobs').sort()).toEqual(['cursor', 'limit', 'status', 'type'])
  expect(names('/v1/jobs/{id}/wait').sort()).toEqual(['since', 'timeout'])
  expect(names('/v1/jobs/{id}/events').sort()).toEqual(['format', 'lastEventId', 'stream'])
})

it('serves a self-contained docs page in development', async () => {
  const res = await service.fetch('/docs')
  expect(res.status).toBe(200)
  expect(res.headers.get('content-type')).toMatch(/^text\/html/)
  const html = await res.text()
  expect(html).not.toMatch(/<script|https?:\/\/(?!jobwire\.dev)/)
  for (const path of Object.keys(doc.paths)) expect(html).toContain(`<code>${path}</code>`)
})

it('has no docs page in production unless the live page is on', async () => {
  const production = await startTestService(database.url, {
    NODE_ENV: 'production',
    WATCH_TOKEN_SECRET: 'w'.repeat(40),
  })
  try {
    expect((await production.fetch('/docs')).status).toBe(404)
    expect((await production.fetch('/openapi.json')).status).toBe(200)
  } finally {
    await production.close()
  }
})
