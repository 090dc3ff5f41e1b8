// `GET /client/jobwire-client.js`: the browser client (`jobwire/client`, src/client/) as one
// self-contained ES module, so a frontend needs no bundler and no package:
//
//     import { watch } from 'https://jobs.example.com/client/jobwire-client.js'
//
// Where the bytes come from (read once per process, then served from memory):
//   * dist/client/jobwire-client.js and its .map, which `npm run build` makes (the Dockerfile
//     runs it), when the service runs from dist/;
//   * otherwise (tsx in development, jest) esbuild bundles src/client/index.ts on the first
//     request (esbuild is a devDependency; a production image never needs it).
// Headers: `text/javascript`, a strong ETag (sha-256 of the bytes, so `If-None-Match` gets a
// 304), `Cache-Control: public, max-age=300` in production (a deployment reaches browsers
// within 5 minutes; then one 304) and `no-cache` elsewhere. A module script from another
// origin is fetched with CORS and is blocked by helmet's `Cross-Origin-Resource-Policy:
// same-origin`, so this public, credential-free file says `Access-Control-Allow-Origin: *`
// and `Cross-Origin-Resource-Policy: cross-origin` (docs/decisions.md, "The client").
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Router, type Request, type Response } from 'express'
import { RouteNotFoundError } from '../../errors.js'
import { PROJECT_ROOT } from '../../project-root.js'

export const CLIENT_SCRIPT_PATH = '/client/jobwire-client.js'
const BUILT = join(PROJECT_ROOT, 'dist', 'client', 'jobwire-client.js')
const SOURCE = join(PROJECT_ROOT, 'src', 'client', 'index.ts')
const PRODUCTION_MAX_AGE_SECONDS = 300

export interface ClientScriptOptions {
  /** Long-lived caching (max-age) in production; revalidate every time elsewhere. */
  isProduction: boolean
}

interface Asset {
  body: Buffer
  etag: string
  type: string
}

type Bundle = { script: Asset; map: Asset }

export function clientScriptRouter(options: ClientScriptOptions): Router {
  const router = Router()
  const cacheControl = options.isProduction
    ? `public, max-age=${PRODUCTION_MAX_AGE_SECONDS}`
    : 'no-cache'
  let loading: Promise<Bundle> | undefined
  const load = () => {
    loading ??= loadBundle()
    loading.catch(() => (loading = undefined))
    return loading
  }
  const serve = (pick: (bundle: Bundle) => Asset) => async (req: Request, res: Response) => {
    const asset = pick(await load())
    res
      .set('content-type', asset.type)
      .set('cache-control', cacheControl)
      .set('etag', asset.etag)
      .set('access-control-allow-origin', '*')
      .set('cross-origin-resource-policy', 'cross-origin')
    if (matchesEtag(req.headers['if-none-match'], asset.etag)) return void res.status(304).end()
    res.send(asset.body)
  }
  router.get(
    CLIENT_SCRIPT_PATH,
    serve((b) => b.script),
  )
  router.get(
    `${CLIENT_SCRIPT_PATH}.map`,
    serve((b) => b.map),
  )
  return router
}

async function loadBundle(): Promise<Bundle> {
  const isSource = import.meta.url.endsWith('.ts') || !existsSync(BUILT)
  const [script, map] = isSource
    ? await bundleSource()
    : await Promise.all([readFile(BUILT), readFile(`${BUILT}.map`)])
  return {
    script: asset(script, 'text/javascript; charset=utf-8'),
    map: asset(map, 'application/json; charset=utf-8'),
  }
}

/** The same bundle as `npm run build:client`, made in memory (development and tests). */
async function bundleSource(): Promise<[Buffer, Buffer]> {
  const notBuilt = new RouteNotFoundError(
    'The browser client is not built here: run `npm run build` (or install esbuild).',
  )
  if (!existsSync(SOURCE)) throw notBuilt
  const esbuild = await import('esbuild').catch(() => {
    throw notBuilt
  })
  const result = await esbuild.build({
    entryPoints: [SOURCE],
    bundle: true,
    format: 'esm',
    platform: 'neutral',
    target: 'es2022',
    minify: true,
    sourcemap: true,
    outfile: BUILT,
    write: false,
    logLevel: 'silent',
  })
  const file = (suffix: string) =>
    Buffer.from(result.outputFiles.find((f) => f.path.endsWith(suffix))!.contents)
  return [file('.js'), file('.js.map')]
}

function asset(body: Buffer, type: string): Asset {
  const hash = createHash('sha256').update(body).digest('base64url').slice(0, 27)
  return { body, type, etag: `"${hash}"` }
}

/** If-None-Match: `*`, or a list of (possibly weak) tags; weak comparison (RFC 9110 13.1.2). */
function matchesEtag(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false
  return header.split(',').some((tag) => {
    const trimmed = tag.trim()
    return trimmed === '*' || trimmed.replace(/^W\//, '') === etag
  })
}
