// The client's own RFC 6902 applier (no dependency in the browser bundle): it must reproduce
// what the server's patches (fast-json-patch compare + a leading test of /version) describe,
// implement the whole RFC (the community suite and the RFC's own examples), agree with
// fast-json-patch on any patch, and fail loudly, all or nothing.
import { readFileSync } from 'node:fs'
import fc from 'fast-check'
import fastJsonPatch from 'fast-json-patch'
import type { Operation } from 'fast-json-patch'
import { applyPatch, deepEqual, parsePointer, PatchError } from '../../src/client/patch.js'
import type { PatchOperation } from '../../src/client/patch.js'
import { diffDocuments } from '../../src/events/patch.js'
import { JOB_STATUSES, type JobDocument } from '../../src/protocol/job.js'
import { jobDocument } from '../helpers/job-document.js'

const base: JobDocument = jobDocument('00000000-0000-4000-8000-000000000001', 1, {
  type: 'render',
  created_at: '2025-01-01T00:00:00.000Z',
  updated_at: '2025-01-01T00:00:00.000Z',
})

/** Applies a patch that must fail: PatchError, and the input is left as it was. */
function expectRejected(doc: unknown, patch: unknown): PatchError {
  const before = structuredClone(doc)
  let thrown: unknown
  try {
    applyPatch(doc, patch as PatchOperation[])
  } catch (error) {
    thrown = error
  }
  expect(thrown).toBeInstanceOf(PatchError)
  expect(doc).toEqual(before)
  return thrown as PatchError
}

describe('applyPatch', () => {
  it('applies all six ops and leaves the input untouched', () => {
    const doc = { a: 1, list: [1, 2, 3], nested: { x: 'y' } }
    const out = applyPatch(doc, [
      { op: 'test', path: '/a', value: 1 },
      { op: 'replace', path: '/a', value: 2 },
      { op: 'add', path: '/list/1', value: 9 },
      { op: 'add', path: '/list/-', value: 4 },
      { op: 'remove', path: '/list/0' },
      { op: 'add', path: '/nested/z', value: { deep: [true] } },
      { op: 'remove', path: '/nested/x' },
      { op: 'copy', from: '/nested/z', path: '/copied' },
      { op: 'move', from: '/list/0', path: '/list/-' },
      { op: 'move', from: '/a', path: '/nested/a' },
    ])
    expect(out).toEqual({
      list: [2, 3, 4, 9],
      nested: { z: { deep: [true] }, a: 2 },
      copied: { deep: [true] },
    })
    expect(doc).toEqual({ a: 1, list: [1, 2, 3], nested: { x: 'y' } })
  })

  it('copies by value: a later op on the copy leaves the original alone', () => {
    const out = applyPatch({ a: { b: [1] } }, [
      { op: 'copy', from: '/a', path: '/c' },
      { op: 'add', path: '/c/b/-', value: 2 },
    ])
    expect(out).toEqual({ a: { b: [1] }, c: { b: [1, 2] } })
  })

  it('does not share values with the patch: a later op cannot change the patch', () => {
    const value = { x: 1 }
    applyPatch({}, [
      { op: 'add', path: '/a', value },
      { op: 'replace', path: '/a/x', value: 2 },
    ])
    expect(value).toEqual({ x: 1 })
  })

  it('throws PatchError when the test op fails, and changes nothing', () => {
    const doc = { ...base, version: 4 }
    const patch: PatchOperation[] = [
      { op: 'test', path: '/version', value: 3 },
      { op: 'replace', path: '/progress', value: 50 },
    ]
    expect(() => applyPatch(doc, patch)).toThrow(PatchError)
    expect(() => applyPatch(doc, patch)).toThrow(/test failed at \/version/)
    expect(doc.progress).toBe(0)
  })

  it('is all or nothing: a failure after successful ops leaves the input as it was', () => {
    const doc = { a: [1, 2], b: { c: 1 } }
    const error = expectRejected(doc, [
      { op: 'remove', path: '/a/0' },
      { op: 'move', from: '/b', path: '/a/-' },
      { op: 'replace', path: '/missing', value: 1 },
    ])
    expect(error.index).toBe(2)
    expect(error.message).toMatch(/^operation 2: /)
    expect(error.operation).toEqual({ op: 'replace', path: '/missing', value: 1 })
  })

  it('unescapes JSON Pointer tokens: ~1 is / and ~0 is ~', () => {
    expect(parsePointer('/a~1b/c~0d/~01')).toEqual(['a/b', 'c~d', '~1'])
    expect(parsePointer('')).toEqual([])
    expect(parsePointer('/')).toEqual([''])
    const out = applyPatch({ 'a/b': 1, 'c~d': 2 }, [
      { op: 'replace', path: '/a~1b', value: 10 },
      { op: 'remove', path: '/c~0d' },
      { op: 'add', path: '/~01', value: 'tilde-one' },
      { op: 'copy', from: '/~01', path: '/~10' },
    ])
    expect(out).toEqual({ 'a/b': 10, '~1': 'tilde-one', '/0': 'tilde-one' })
  })

  it.each<[string, unknown]>([
    ['a missing member', { op: 'replace', path: '/nope', value: 1 }],
    ['a missing parent', { op: 'add', path: '/no/such', value: 1 }],
    ['an index past the end', { op: 'add', path: '/list/5', value: 1 }],
    ['replacing past the end', { op: 'replace', path: '/list/2', value: 1 }],
    ['removing "-" (no element)', { op: 'remove', path: '/list/-' }],
    ['testing "-" (no element)', { op: 'test', path: '/list/-', value: 1 }],
    ['a non-numeric index', { op: 'remove', path: '/list/x' }],
    ['a leading zero index', { op: 'remove', path: '/list/01' }],
    ['a negative index', { op: 'add', path: '/list/-1', value: 1 }],
    ['removing the root', { op: 'remove', path: '' }],
    ['a pointer without /', { op: 'remove', path: 'list' }],
    ['a ~ that escapes nothing', { op: 'add', path: '/a~2', value: 1 }],
    ['a ~ at the end', { op: 'add', path: '/a~', value: 1 }],
    ['an unknown op', { op: 'spam', path: '/list' }],
    ['an op that is not a string', { op: 1, path: '/list' }],
    ['add without a value', { op: 'add', path: '/a' }],
    ['replace without a value', { op: 'replace', path: '/list/0' }],
    ['test without a value', { op: 'test', path: '/list/0' }],
    ['an undefined value', { op: 'add', path: '/a', value: undefined }],
    ['move without from', { op: 'move', path: '/a' }],
    ['copy with a from that is not a pointer', { op: 'copy', from: 'list', path: '/a' }],
    ['move from a missing member', { op: 'move', from: '/nope', path: '/a' }],
    ['copy from past the end', { op: 'copy', from: '/list/2', path: '/a' }],
    ['moving a member into its own child', { op: 'move', from: '/list', path: '/list/0' }],
    ['moving the root into a member', { op: 'move', from: '', path: '/a' }],
    ['a path without a string', { op: 'remove' }],
    ['an operation that is not an object', 'remove /list'],
    ['an operation that is an array', ['remove', '/list']],
  ])('rejects %s', (_name, operation) => {
    expectRejected({ list: [1, 2] }, [operation])
  })

  it('rejects a patch that is not an array', () => {
    expectRejected({ a: 1 }, { op: 'remove', path: '/a' })
  })

  it('replaces or adds the whole document with path "", and moves to itself as a no-op', () => {
    expect(applyPatch({ a: 1 }, [{ op: 'replace', path: '', value: { b: 2 } }])).toEqual({ b: 2 })
    expect(applyPatch({ a: 1 }, [{ op: 'add', path: '', value: [1] }])).toEqual([1])
    expect(applyPatch({ a: 1 }, [{ op: 'copy', from: '', path: '/self' }])).toEqual({
      a: 1,
      self: { a: 1 },
    })
    expect(applyPatch({ a: { b: 1 } }, [{ op: 'move', from: '/a', path: '/a' }])).toEqual({
      a: { b: 1 },
    })
    expect(applyPatch({ a: 1 }, [{ op: 'move', from: '', path: '' }])).toEqual({ a: 1 })
  })

  it('treats "-" and digits as plain keys on objects', () => {
    expect(
      applyPatch({}, [
        { op: 'add', path: '/-', value: 1 },
        { op: 'add', path: '/01', value: 2 },
      ]),
    ).toEqual({ '-': 1, '01': 2 })
  })

  it('compares values by JSON equality in test ops', () => {
    expect(deepEqual({ a: [1, { b: 2 }], c: null }, { c: null, a: [1, { b: 2 }] })).toBe(true)
    expect(deepEqual([1, 2], [2, 1])).toBe(false)
    expect(deepEqual({ a: 1 }, { a: 1, b: undefined })).toBe(false)
    expect(deepEqual([], {})).toBe(false)
    expect(deepEqual(1, '1')).toBe(false)
    const doc = { result: { rows: [1, 2] } }
    expect(() =>
      applyPatch(doc, [{ op: 'test', path: '/result', value: { rows: [1, 2] } }]),
    ).not.toThrow()
    expectRejected(doc, [{ op: 'test', path: '/result/rows', value: [2, 1] }])
  })

  it('adds a `__proto__` key as data, never as the prototype', () => {
    const doc = JSON.parse('{"result":{}}') as { result: Record<string, unknown> }
    const out = applyPatch(doc, [
      { op: 'add', path: '/result/__proto__', value: { polluted: true } },
    ]) as typeof doc
    // (structuredClone makes objects of the main realm, so compare shapes, not identities.)
    expect(Object.getPrototypeOf(Object.getPrototypeOf(out.result))).toBeNull()
    expect((Object.getPrototypeOf(out.result) as Record<string, unknown>).polluted).toBeUndefined()
    expect(Object.hasOwn(out.result, '__proto__')).toBe(true)
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  })

  it('moves, copies, tests and removes `__proto__` and `constructor` keys as data', () => {
    const doc = JSON.parse('{"a":{"__proto__":{"x":1},"constructor":{"y":2}}}') as unknown
    const out = applyPatch(doc, [
      { op: 'test', path: '/a/__proto__', value: { x: 1 } },
      { op: 'copy', from: '/a/__proto__', path: '/b' },
      { op: 'move', from: '/a/constructor', path: '/__proto__' },
      { op: 'add', path: '/__proto__/polluted', value: true },
      { op: 'remove', path: '/a/__proto__' },
    ]) as Record<string, unknown>
    expect(JSON.stringify(out)).toBe('{"a":{},"b":{"x":1},"__proto__":{"y":2,"polluted":true}}')
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
    expect(Object.getPrototypeOf(out)).not.toHaveProperty('polluted')
    // Inherited members are not members: nothing to test, remove or walk through.
    expectRejected({}, [{ op: 'test', path: '/constructor', value: {} }])
    expectRejected({}, [{ op: 'remove', path: '/toString' }])
    expectRejected({}, [{ op: 'add', path: '/constructor/prototype/polluted', value: 1 }])
    expectRejected({}, [{ op: 'copy', from: '/__proto__', path: '/p' }])
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  })
})

// The community JSON Patch suite (json-patch-tests, Apache-2.0; vendored verbatim, see
// test/fixtures/json-patch-tests/README.md): its own cases, and spec_tests.json, the
// examples of RFC 6902 appendix A. Disabled records run too (this applier handles them),
// except A.13's "two op members", which JSON.parse cannot represent.
interface SuiteRecord {
  comment?: string
  doc?: unknown
  patch?: unknown[]
  expected?: unknown
  error?: string
  disabled?: boolean
}

function suite(file: string): Array<[string, SuiteRecord]> {
  const url = new URL(`../fixtures/json-patch-tests/${file}`, import.meta.url)
  const records = JSON.parse(readFileSync(url, 'utf8')) as SuiteRecord[]
  return records.flatMap((r, i): Array<[string, SuiteRecord]> => {
    if (r.patch === undefined || (r.disabled && r.error !== undefined)) return []
    return [[`${file} #${i}: ${r.comment ?? r.error ?? JSON.stringify(r.patch)}`, r]]
  })
}

describe.each(['spec_tests.json', 'tests.json'])('the json-patch-tests suite, %s', (file) => {
  it.each(suite(file))('%s', (_name, record) => {
    if (record.error !== undefined) {
      expectRejected(record.doc, record.patch)
    } else {
      const out = applyPatch(record.doc, record.patch as PatchOperation[])
      if ('expected' in record) expect(out).toEqual(record.expected)
    }
  })

  it('runs every case it has (a guard against an empty or misread file)', () => {
    expect(suite(file).length).toBeGreaterThan(file === 'tests.json' ? 70 : 15)
  })
})

// RFC 6902's error cases by section, spelled out (the suite above has them as data).
describe('the RFC 6902 error cases', () => {
  it('4.1: add does not create missing parents', () => {
    expectRejected({ q: { bar: 2 } }, [{ op: 'add', path: '/a/b', value: 1 }])
  })
  it('4.1: an index greater than the number of elements is an error', () => {
    expectRejected({ foo: [1] }, [{ op: 'add', path: '/foo/2', value: 1 }])
  })
  it('4.2/4.3: remove and replace need an existing target', () => {
    expectRejected({ foo: 1 }, [{ op: 'remove', path: '/bar' }])
    expectRejected({ foo: 1 }, [{ op: 'replace', path: '/bar', value: 1 }])
  })
  it('4.4: a location cannot be moved into one of its children', () => {
    expectRejected({ a: { b: {} } }, [{ op: 'move', from: '/a', path: '/a/b/c' }])
  })
  it('4.4/4.5: move and copy need an existing "from"', () => {
    expectRejected({ a: 1 }, [{ op: 'move', from: '/b', path: '/c' }])
    expectRejected({ a: 1 }, [{ op: 'copy', from: '/b', path: '/c' }])
  })
  it('A.9 and A.15: a test of a different value, or a number against a string, fails', () => {
    expectRejected({ baz: 'qux' }, [{ op: 'test', path: '/baz', value: 'bar' }])
    expectRejected({ '/': 9, '~1': 10 }, [{ op: 'test', path: '/~01', value: '10' }])
  })
  it('A.12: adding to a non-existent target fails', () => {
    expectRejected({ foo: 'bar' }, [{ op: 'add', path: '/baz/bat', value: 'qux' }])
  })
  it('4 and 5: a missing "value" or "from", or an unknown op, makes the whole patch fail', () => {
    const doc = { foo: 1 }
    for (const bad of [
      { op: 'add', path: '/x' },
      { op: 'replace', path: '/foo' },
      { op: 'test', path: '/foo' },
      { op: 'copy', path: '/x' },
      { op: 'move', path: '/x' },
      { op: 'spam', path: '/x', value: 1 },
    ])
      expectRejected(doc, [{ op: 'add', path: '/ok', value: 1 }, bad])
  })
})

// Property tests with fast-json-patch as the reference. It validates add, remove, replace
// and test well, but applies the add inside move and copy without its checks (so an index
// past the end or a non-numeric one "works"), lets a remove of the root make null, a move
// into a child go ahead, `~2` pass for a pointer, '' or `01` index an array, and ops below
// a root that became a scalar do nothing. The reference is
// therefore fast-json-patch's validated add, remove, replace and test, with move and copy
// spelled the way RFC 6902 defines them (4.4: a remove, then an add; 4.5: an add of the
// value at "from") and those RFC rules checked first.
const KEYS = ['a', 'b', 'c', '', '-', '0', '1', '~', '/', 'a/b', '~1'] as const
const escape = (key: string) => key.replaceAll('~', '~0').replaceAll('/', '~1')

const jsonLeaf = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.integer({ min: -3, max: 3 }),
  fc.constantFrom('', 'x', '1'),
)
const { json } = fc.letrec<{ json: unknown }>((tie) => ({
  json: fc.oneof(
    { depthSize: 'small', maxDepth: 3 },
    jsonLeaf,
    fc.array(tie('json'), { maxLength: 3 }),
    fc.dictionary(fc.constantFrom(...KEYS), tie('json'), { maxKeys: 4 }),
  ),
}))
const normalise = (value: unknown) => JSON.parse(JSON.stringify(value)) as unknown
const containerDoc = fc
  .oneof(
    fc.dictionary(fc.constantFrom(...KEYS), json, { maxKeys: 4 }),
    fc.array(json, { maxLength: 4 }),
  )
  .map(normalise)

/** Pointers into `doc`: every existing location, and near misses around each container. */
function pointersOf(doc: unknown): string[] {
  const out: string[] = ['', '/zz', 'a', '/a~2']
  const walk = (node: unknown, at: string) => {
    out.push(at)
    if (Array.isArray(node)) {
      out.push(`${at}/-`, `${at}/${node.length}`, `${at}/${node.length + 1}`, `${at}/x`)
      node.forEach((child, i) => walk(child, `${at}/${i}`))
    } else if (typeof node === 'object' && node !== null) {
      for (const key of KEYS) if (!Object.hasOwn(node, key)) out.push(`${at}/${escape(key)}`)
      for (const [key, child] of Object.entries(node)) walk(child, `${at}/${escape(key)}`)
    }
  }
  walk(doc, '')
  return [...new Set(out)]
}

function operationArb(doc: unknown): fc.Arbitrary<Record<string, unknown>> {
  const pointer = fc.constantFrom(...pointersOf(doc))
  const existing = fc.constantFrom(...pointersOf(doc).filter((p) => valueAt(doc, p) !== undefined))
  const value = json.map(normalise)
  return fc.oneof(
    fc.record({ op: fc.constantFrom('add', 'replace'), path: pointer, value }),
    fc.record({ op: fc.constant('remove'), path: fc.oneof(existing, pointer) }),
    // A test passes when it names what is there (at the start of the patch, at least).
    existing.chain((path) =>
      fc.record({
        op: fc.constant('test'),
        path: fc.constant(path),
        value: fc.oneof(fc.constant(valueAt(doc, path)), value),
      }),
    ),
    fc.record({
      op: fc.constantFrom('move', 'copy'),
      from: fc.oneof(existing, pointer),
      path: pointer,
    }),
  )
}

/** The value at `pointer`, or undefined (a generator detail: which pointers exist). */
function valueAt(doc: unknown, pointer: string): unknown {
  try {
    return normalise(applyPatch(doc, [{ op: 'copy', from: pointer, path: '' }]))
  } catch {
    return undefined
  }
}

/** RFC 6901 4: an array index is `0` or digits without a leading zero (or `-`, past the end). */
function assertArrayIndices(doc: unknown, pointer: string): void {
  let node = doc
  for (const raw of pointer.split('/').slice(1)) {
    const token = raw.replaceAll('~1', '/').replaceAll('~0', '~')
    if (!Array.isArray(node)) {
      const isMember = typeof node === 'object' && node !== null && Object.hasOwn(node, token)
      node = isMember ? (node as Record<string, unknown>)[token] : undefined
      continue
    }
    if (token === '-') return
    if (!/^(0|[1-9]\d*)$/.test(token)) throw new Error('not an array index')
    node = node[Number(token)]
  }
}

/** fast-json-patch, plus the RFC rules it does not check (see above). */
function reference(doc: unknown, patch: Array<Record<string, unknown>>): unknown {
  const isPointer = (p: unknown) =>
    p === '' || (typeof p === 'string' && p.startsWith('/') && !/~([^01]|$)/.test(p))
  const apply = (target: unknown, op: Record<string, unknown>) =>
    fastJsonPatch.applyOperation(
      target,
      structuredClone(op) as unknown as Operation,
      true,
      true,
      true,
    )
  let out = structuredClone(doc)
  for (const op of patch) {
    const path = op.path as string
    const from = op.from as string
    if (!isPointer(path) || (op.from !== undefined && !isPointer(from)))
      throw new Error('not a pointer')
    if (op.from !== undefined) assertArrayIndices(out, from)
    if ((typeof out !== 'object' || out === null) && path !== '')
      throw new Error('nothing below a scalar root')
    if (op.op === 'remove' && path === '') throw new Error('cannot remove the root')
    if (op.op === 'move' || op.op === 'copy') {
      if (op.op === 'move' && path === from) {
        apply(structuredClone(out), { op: 'remove', path: from })
        continue
      }
      if (op.op === 'move' && (from === '' || path.startsWith(`${from}/`)))
        throw new Error('move into a child')
      const moved =
        from === ''
          ? structuredClone(out)
          : apply(structuredClone(out), { op: 'remove', path: from }).removed
      if (op.op === 'move') out = apply(out, { op: 'remove', path: from }).newDocument
      assertArrayIndices(out, path)
      out = apply(out, { op: 'add', path, value: moved }).newDocument
      continue
    }
    assertArrayIndices(out, path)
    out = apply(out, op).newDocument
  }
  return out
}

describe('applyPatch against fast-json-patch', () => {
  it('agrees on any patch: the same result, or both refuse (and nothing changed)', () => {
    const cases = containerDoc.chain((doc) =>
      fc.tuple(fc.constant(doc), fc.array(operationArb(doc), { minLength: 1, maxLength: 4 })),
    )
    let applied = 0
    let refused = 0
    fc.assert(
      fc.property(cases, ([doc, patch]) => {
        const before = structuredClone(doc)
        let expected: { value: unknown } | undefined
        try {
          expected = { value: reference(doc, patch) }
        } catch {
          expected = undefined
        }
        if (expected) {
          expect(applyPatch(doc, patch as PatchOperation[])).toEqual(expected.value)
          applied++
        } else {
          expect(() => applyPatch(doc, patch as PatchOperation[])).toThrow(PatchError)
          refused++
        }
        expect(doc).toEqual(before)
      }),
      { numRuns: 1000 },
    )
    // Both outcomes are exercised, not just one.
    expect(applied).toBeGreaterThan(100)
    expect(refused).toBeGreaterThan(100)
  })

  it('reproduces any server patch between two job documents', () => {
    // Without `__proto__`/`constructor` keys: the reference (fast-json-patch) refuses them; the
    // tests above cover how this applier handles them.
    const anyJson = fc
      .jsonValue({ maxDepth: 3 })
      .map((v) => JSON.parse(JSON.stringify(v)) as unknown)
      .filter((v) => !/"(__proto__|constructor)"/.test(JSON.stringify(v)))
    const docArb = fc.record({
      status: fc.constantFrom(...JOB_STATUSES),
      progress: fc.integer({ min: 0, max: 100 }),
      step: fc.option(fc.string(), { nil: null }),
      eta_seconds: fc.option(fc.nat(), { nil: null }),
      result: anyJson,
      version: fc.integer({ min: 2, max: 1000 }),
    })
    fc.assert(
      fc.property(docArb, docArb, (a, b) => {
        const from = { ...base, ...a } as JobDocument
        const to = { ...base, ...b, version: from.version + 1 } as JobDocument
        const patch = diffDocuments(from, to) as PatchOperation[]
        expect(applyPatch(from, patch)).toEqual(to)
        expect(applyPatch(from, patch)).toEqual(
          fastJsonPatch.applyPatch(structuredClone(from), diffDocuments(from, to)).newDocument,
        )
        expect(() => applyPatch({ ...from, version: from.version + 1 }, patch)).toThrow(PatchError)
      }),
      { numRuns: 300 },
    )
  })
})
