// `npm run pack:client`: the browser client as an npm tarball for bundlers. The tarball is a
// package named `jobwire` whose only entry is `jobwire/client` (the same minified ES module
// that the service serves at /client/jobwire-client.js, its source map and its TypeScript
// declarations) and which has no dependencies, so `npm install <tarball>` works offline.
// The service itself is not in it: it runs from this repository or its Docker image.
//
//   npm run pack:client                  → dist/jobwire-client-<version>.tgz
//   npm run pack:client -- --out <dir>   → <dir>/jobwire-client-<version>.tgz
//
// It prints the tarball's path. Steps: esbuild bundles src/client/index.ts; tsc writes the
// declarations of src/client and src/protocol; a package.json with `exports` and `files` is
// written beside them; `npm pack` packs that folder.
import { execFileSync } from 'node:child_process'
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'
import ts from 'typescript'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const outIndex = process.argv.indexOf('--out')
const outDir = resolve(outIndex > 0 ? process.argv[outIndex + 1] : join(root, 'dist'))
const stage = join(root, 'dist', 'client-package')
const { version, license, engines } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))

rmSync(stage, { recursive: true, force: true })
mkdirSync(stage, { recursive: true })

// The same options as `npm run build:client`.
await build({
  entryPoints: [join(root, 'src', 'client', 'index.ts')],
  bundle: true,
  format: 'esm',
  platform: 'neutral',
  target: 'es2022',
  minify: true,
  sourcemap: true,
  outfile: join(stage, 'client', 'jobwire-client.js'),
  logLevel: 'warning',
})

const program = ts.createProgram([join(root, 'src', 'client', 'index.ts')], {
  declaration: true,
  emitDeclarationOnly: true,
  rootDir: join(root, 'src'),
  outDir: join(stage, 'types'),
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  lib: ['lib.es2023.d.ts', 'lib.dom.d.ts', 'lib.dom.iterable.d.ts'],
  types: [],
  strict: true,
  skipLibCheck: true,
})
const emitted = program.emit()
const problems = [...ts.getPreEmitDiagnostics(program), ...emitted.diagnostics]
if (problems.length > 0 || emitted.emitSkipped) {
  const host = {
    getCanonicalFileName: (f) => f,
    getCurrentDirectory: () => root,
    getNewLine: () => '\n',
  }
  process.stderr.write(ts.formatDiagnostics(problems, host))
  process.exit(1)
}

const manifest = {
  name: 'jobwire',
  version,
  description:
    'The jobwire browser client (jobwire/client): watch job documents over SSE with resume, backoff and long-poll fallback.',
  license,
  type: 'module',
  sideEffects: false,
  engines,
  exports: {
    './client': {
      types: './types/client/index.d.ts',
      default: './client/jobwire-client.js',
    },
    './package.json': './package.json',
  },
  files: ['client', 'types'],
}
writeFileSync(join(stage, 'package.json'), JSON.stringify(manifest, null, 2) + '\n')
writeFileSync(
  join(stage, 'README.md'),
  '# jobwire/client\n\n' +
    "The browser and Node 20+ client of jobwire, with no dependencies: `import { watch } from 'jobwire/client'`.\n" +
    'See docs/client.md in the jobwire repository.\n',
)

mkdirSync(outDir, { recursive: true })
const [packed] = JSON.parse(
  execFileSync('npm', ['pack', stage, '--json', '--pack-destination', outDir], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  }),
)
const tarball = join(outDir, `jobwire-client-${version}.tgz`)
renameSync(join(outDir, packed.filename), tarball)
process.stdout.write(tarball + '\n')
