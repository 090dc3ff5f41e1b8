// The live page (docs/contract.md §13): index.html, styles.css and app.js at LIVE_PAGE_PATH, and in
// development `<path>dev/token`, which hands the page the demo tenant's admin token.
// Where the files come from:
//   * running from dist/ (`npm run build`): dist/public/, which the build fills (app.js
//     bundled by esbuild, index.html and styles.css copied);
//   * running from src/ (tsx, jest): src/dev/public/, with app.ts bundled by esbuild in
//     memory on the first request (esbuild is a devDependency; production never does this).
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { Router, type Response } from 'express'
import { PROJECT_ROOT } from '../project-root.js'

export interface LivePageOptions {
  /** Where the page lives, e.g. '/' or '/live' (LIVE_PAGE_PATH). */
  path: string
  /** Served at `<path>dev/token` when given: pass it in development only. */
  devToken?: string
  /** A folder with index.html, styles.css and app.js (or app.ts); see above for the default. */
  publicDir?: string
}

const SOURCE_DIR = join(PROJECT_ROOT, 'src', 'dev', 'public')
const BUILT_DIR = join(PROJECT_ROOT, 'dist', 'public')

export function livePageRouter(options: LivePageOptions): Router {
  const base = options.path.replace(/\/+$/, '')
  const dir =
    options.publicDir ??
    (import.meta.url.endsWith('.ts') || !existsSync(join(BUILT_DIR, 'app.js'))
      ? SOURCE_DIR
      : BUILT_DIR)
  const router = Router()
  const noCache = (res: Response) => res.set('cache-control', 'no-cache')

  // `/live` → `/live/`, so that the page's relative URLs (app.js, dev/token) resolve below it.
  if (base !== '') router.get(base, (req, res) => res.redirect(308, `${base}/`))

  router.get(`${base}/`, (_req, res) => {
    noCache(res).sendFile(join(dir, 'index.html'))
  })
  router.get(`${base}/app.js`, async (_req, res) => {
    const built = join(dir, 'app.js')
    if (existsSync(built)) return noCache(res).type('text/javascript').sendFile(built)
    noCache(res)
      .type('text/javascript')
      .send(await bundleApp(join(dir, 'app.ts')))
  })
  router.get(`${base}/styles.css`, (_req, res) => {
    noCache(res).sendFile(join(dir, 'styles.css'))
  })
  if (options.devToken !== undefined) {
    const devToken = options.devToken
    router.get(`${base}/dev/token`, (_req, res) => {
      res.set('cache-control', 'no-store').json({ token: devToken })
    })
  }
  return router
}

let bundled: Promise<string> | undefined

/** Bundles the page's script with esbuild, once per process (development only). */
function bundleApp(entry: string): Promise<string> {
  bundled ??= (async () => {
    const esbuild = await import('esbuild').catch(() => {
      throw new Error('live page: app.js is not built (npm run build) and esbuild is missing')
    })
    const result = await esbuild.build({
      entryPoints: [entry],
      bundle: true,
      format: 'esm',
      target: 'es2022',
      sourcemap: 'inline',
      write: false,
      logLevel: 'silent',
    })
    return result.outputFiles[0]!.text
  })()
  bundled.catch(() => (bundled = undefined))
  return bundled
}
