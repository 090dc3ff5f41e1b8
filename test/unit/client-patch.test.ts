// The client's own RFC 6902 applier (no dependency in the browser bundle): it must reproduce
// what the server's patches (fast-json-patch compare + a leading test of /version) describe,
// and fail loudly, all or nothing, when the base is wrong.
import fc from 'fast-check'
import fastJsonPatch from 'fast-json-patch'
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

describe('applyPatch', () => {
  it('applies test, add, remove and replace and leaves the input untouched', () => {
    const doc = { a: 1, list: [1, 2, 3], nested: { x: 'y' } }
    const out = applyPatch(doc, [
      { op: 'test', path: '/a', value: 1 },
      { op: 'replace', path: '/a', value: 2 },
      { op: 'add', path: '/list/1', value: 9 },
      { op: 'add', path: '/list/-', value: 4 },
      { op: 'remove', path: '/list/0' },
      { op: 'add', path: '/nested/z', value: { deep: [true] } },
      { op: 'remove', path: '/nested/x' },
    ])
    expect(out).toEqual({ a: 2, list: [9, 2, 3, 4], nested: { z: { deep: [true] } } })
    expect(doc).toEqual({ a: 1, list: [1, 2, 3], nested: { x: 'y' } })
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

  it('unescapes JSON Pointer tokens: ~1 is / and ~0 is ~', () => {
    expect(parsePointer('/a~1b/c~0d/~01')).toEqual(['a/b', 'c~d', '~1'])
    expect(parsePointer('')).toEqual([])
    const out = applyPatch({ 'a/b': 1, 'c~d': 2 }, [
      { op: 'replace', path: '/a~1b', value: 10 },
      { op: 'remove', path: '/c~0d' },
      { op: 'add', path: '/~01', value: 'tilde-one' },
    ])
    expect(out).toEqual({ 'a/b': 10, '~1': 'tilde-one' })
  })

  it.each<[string, PatchOperation]>([
    ['a missing member', { op: 'replace', path: '/nope', value: 1 }],
    ['a missing parent', { op: 'add', path: '/no/such', value: 1 }],
    ['an index past the end', { op: 'add', path: '/list/5', value: 1 }],
    ['a non-numeric index', { op: 'remove', path: '/list/x' }],
    ['a leading zero index', { op: 'remove', path: '/list/01' }],
    ['removing the root', { op: 'remove', path: '' }],
    ['a pointer without /', { op: 'remove', path: 'list' }],
    ['an unsupported op', { op: 'move', from: '/a', path: '/b' } as unknown as PatchOperation],
  ])('rejects %s', (_name, operation) => {
    expect(() => applyPatch({ list: [1, 2] }, [operation])).toThrow(PatchError)
  })

  it('replaces the whole document with path ""', () => {
    expect(applyPatch({ a: 1 }, [{ op: 'replace', path: '', value: { b: 2 } }])).toEqual({ b: 2 })
  })

  it('compares values by JSON equality in test ops', () => {
    expect(deepEqual({ a: [1, { b: 2 }], c: null }, { c: null, a: [1, { b: 2 }] })).toBe(true)
    expect(deepEqual([1, 2], [2, 1])).toBe(false)
    expect(deepEqual({ a: 1 }, { a: 1, b: undefined })).toBe(false)
    const doc = { result: { rows: [1, 2] } }
    expect(() =>
      applyPatch(doc, [{ op: 'test', path: '/result', value: { rows: [1, 2] } }]),
    ).not.toThrow()
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

  it('reproduces any server patch between two job documents', () => {
    // Without `__proto__`/`constructor` keys: the reference (fast-json-patch) refuses them; the
    // test above covers how this applier handles them.
    const json = fc
      .jsonValue({ maxDepth: 3 })
      .map((v) => JSON.parse(JSON.stringify(v)) as unknown)
      .filter((v) => !/"(__proto__|constructor)"/.test(JSON.stringify(v)))
    const docArb = fc.record({
      status: fc.constantFrom(...JOB_STATUSES),
      progress: fc.integer({ min: 0, max: 100 }),
      step: fc.option(fc.string(), { nil: null }),
      eta_seconds: fc.option(fc.nat(), { nil: null }),
      result: json,
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
