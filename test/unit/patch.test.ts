// RFC 6902 patches between job documents (docs/contract.md §7): for any run of versions, each patch
// and the merged patch a slow or resuming client gets reproduce the newer document exactly, and the
// leading test op rejects a wrong base.
import fc from 'fast-check'
import fastJsonPatch from 'fast-json-patch'
import { applyDocumentPatch, diffDocuments } from '../../src/events/patch.js'
import { JOB_STATUSES, type JobDocument } from '../../src/protocol/job.js'
import { jobDocument } from '../helpers/job-document.js'

const base: JobDocument = jobDocument('00000000-0000-4000-8000-000000000001', 1, {
  type: 'render',
  created_at: '2025-01-01T00:00:00.000Z',
  updated_at: '2025-01-01T00:00:00.000Z',
})

/** What reaches a client: the document as JSON (so -0 is 0, and so on). */
const wire = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T

// fast-json-patch refuses paths through __proto__ or constructor/prototype (prototype
// pollution); keys a job result may carry are drawn without those two.
const key = fc.string({ maxLength: 8 }).filter((k) => k !== '__proto__' && k !== 'constructor')
const json = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constant(null),
    fc.boolean(),
    fc.integer(),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.string({ maxLength: 12 }),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(key, tie('value'), { maxKeys: 4 }),
  ),
})).value

/** One change a worker (or anyone with SQL) might make to the row. */
const change = fc.record(
  {
    status: fc.constantFrom(...JOB_STATUSES),
    progress: fc.double({ min: 0, max: 100, noNaN: true }),
    step: fc.option(fc.string({ maxLength: 30 })),
    eta_seconds: fc.option(fc.nat()),
    result: json,
    error: fc.option(fc.record({ message: fc.string(), code: fc.option(fc.string()) })),
    attempts: fc.nat({ max: 10 }),
    cancel_requested: fc.boolean(),
    updated_at: fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
  },
  { requiredKeys: [] },
)

const documents = fc.array(change, { minLength: 1, maxLength: 12 }).map((changes) => {
  const docs: JobDocument[] = [base]
  for (const c of changes) {
    const previous = docs[docs.length - 1]!
    docs.push(wire({ ...previous, ...c, version: previous.version + 1 }) as JobDocument)
  }
  return docs
})

describe('diffDocuments', () => {
  it('starts every patch with a test of the base version', () => {
    const next = { ...base, version: 2, progress: 50 }
    expect(diffDocuments(base, next)[0]).toEqual({ op: 'test', path: '/version', value: 1 })
  })

  it('turns each document into the next, for any run of versions', () => {
    fc.assert(
      fc.property(documents, (docs) => {
        for (let i = 1; i < docs.length; i++) {
          const patch = wire(diffDocuments(docs[i - 1]!, docs[i]!))
          expect(applyDocumentPatch(docs[i - 1]!, patch)).toEqual(docs[i])
        }
      }),
      { numRuns: 300 },
    )
  })

  it('merges any run into one patch from the first document to the last', () => {
    fc.assert(
      fc.property(documents, (docs) => {
        const first = docs[0]!
        const last = docs[docs.length - 1]!
        const merged = wire(diffDocuments(first, last))
        expect(applyDocumentPatch(first, merged)).toEqual(last)
        // The way a client applies it: fast-json-patch with validation on.
        expect(fastJsonPatch.applyPatch(wire(first), merged, true, false).newDocument).toEqual(last)
      }),
      { numRuns: 300 },
    )
  })

  it('agrees with applying every patch in turn', () => {
    fc.assert(
      fc.property(documents, (docs) => {
        let doc = docs[0]!
        for (let i = 1; i < docs.length; i++)
          doc = applyDocumentPatch(doc, wire(diffDocuments(docs[i - 1]!, docs[i]!)))
        expect(doc).toEqual(docs[docs.length - 1])
      }),
      { numRuns: 200 },
    )
  })

  it('fails loudly when a patch is applied to the wrong base', () => {
    fc.assert(
      fc.property(documents, fc.integer({ min: 1, max: 50 }), (docs, offset) => {
        fc.pre(docs.length >= 2)
        const patch = diffDocuments(docs[0]!, docs[docs.length - 1]!)
        const wrongBase = { ...docs[0]!, version: docs[0]!.version + offset }
        expect(() => applyDocumentPatch(wrongBase, patch)).toThrow(/test operation failed/i)
      }),
      { numRuns: 100 },
    )
  })

  it('does not change the document it is applied to', () => {
    const next = { ...base, version: 2, status: 'running' as const, progress: 10 }
    const copy = structuredClone(base)
    applyDocumentPatch(base, diffDocuments(base, next))
    expect(base).toEqual(copy)
  })
})
