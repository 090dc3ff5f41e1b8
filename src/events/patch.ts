// RFC 6902 patches between job documents. Every patch starts with a `test` of /version so
// a client that applies it to the wrong base fails loudly instead of drifting (docs/contract.md §7).
import fastJsonPatch from 'fast-json-patch'
import type { Operation } from 'fast-json-patch'
import type { JobDocument } from '../protocol/job.js'

export type { Operation }

export function diffDocuments(base: JobDocument, next: JobDocument): Operation[] {
  return [
    { op: 'test', path: '/version', value: base.version },
    ...fastJsonPatch.compare(base, next),
  ]
}

/** Applies a patch to a copy of `doc`; throws when the test op fails. */
export function applyDocumentPatch(doc: JobDocument, patch: readonly Operation[]): JobDocument {
  return fastJsonPatch.applyPatch(structuredClone(doc), patch as Operation[], true, false)
    .newDocument
}
