// The repository owns its contract: code, tests and docs cite its own pages (docs/contract.md
// by section, bench/TARGETS.md by row), never documents that are not in the repository, and
// every cited section exists. Reads files only.
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { PROJECT_ROOT } from '../../src/project-root.js'

const SKIP_DIRS = new Set(['node_modules', 'dist', '.data', 'coverage', 'test-output', '.git'])
const TEXT = /\.(ts|mjs|js|md|sql|yml|yaml|json)$|^\.env\.example$|^Dockerfile$/
// Files that may still name an outside document: a merged migration is never edited.
const PENDING = new Set([
  'migrations/1764000000001_worker-functions.sql', // merged migrations are never edited
])

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) return SKIP_DIRS.has(name) ? [] : files(path)
    return TEXT.test(name) && name !== 'package-lock.json' ? [path] : []
  })
}

const all = files(PROJECT_ROOT).map((path) => ({
  path: relative(PROJECT_ROOT, path),
  text: readFileSync(path, 'utf8'),
}))
const contract = readFileSync(join(PROJECT_ROOT, 'docs/contract.md'), 'utf8')
const sections = new Set([...contract.matchAll(/^## (\d+)\. /gm)].map((m) => Number(m[1])))

it('cites no document outside the repository (SPEC, BENCH, STYLE, COMPAT)', () => {
  const outside = /\bSPEC\b|\bBENCH\.md|\bSTYLE\.md|\bCOMPAT\.md|\/work\/shared/
  const hits = all
    .filter((file) => !PENDING.has(file.path) && file.path !== 'test/unit/citations.test.ts')
    .flatMap((file) =>
      file.text
        .split('\n')
        .map((line, i) => ({ line, at: `${file.path}:${i + 1}` }))
        .filter(({ line }) => outside.test(line))
        .map(({ at, line }) => `${at}: ${line.trim()}`),
    )
  expect(hits).toEqual([])
})

it('cites only sections docs/contract.md has', () => {
  const cited = all.flatMap((file) =>
    [...file.text.matchAll(/(?:docs\/contract\.md|contract) §(\d+)(?:–§(\d+))?/g)].flatMap((m) =>
      [m[1], m[2]].filter(Boolean).map((n) => ({ at: file.path, n: Number(n) })),
    ),
  )
  expect(cited.length).toBeGreaterThan(20)
  expect(cited.filter(({ n }) => !sections.has(n))).toEqual([])
})

it('links only to anchors docs/contract.md has', () => {
  // GitHub's anchors: lower case, punctuation dropped, spaces to hyphens.
  const anchors = new Set(
    [...contract.matchAll(/^## (.+)$/gm)].map((m) =>
      m[1]!
        .toLowerCase()
        .replace(/[^\w\s-]/g, '')
        .replace(/\s/g, '-'),
    ),
  )
  const linked = all.flatMap((file) =>
    [...file.text.matchAll(/(?<![\w-])contract\.md#([\w-]+)/g)].map((m) => ({
      at: file.path,
      anchor: m[1]!,
    })),
  )
  expect(linked.length).toBeGreaterThan(0)
  expect(linked.filter(({ anchor }) => !anchors.has(anchor))).toEqual([])
})
