// Documents built from a notification's small fields: the same bytes toJobDocument() renders
// for the row, and nothing built where a change in between is missing or the notification
// cannot carry the change.
import type { JobDocumentRow } from '../../src/db/jobs.js'
import { toJobDocument } from '../../src/events/document.js'
import { parseNotification, type JobNotification } from '../../src/events/notification.js'
import { documentFromNotification } from '../../src/events/small-change.js'

const ID = '6f1c2d3e-4b5a-4c6d-8e7f-901234567890'
const TENANT = '0a1b2c3d-4e5f-4a6b-9c8d-7e6f5a4b3c2d'

function row(patch: Partial<JobDocumentRow>): JobDocumentRow {
  return {
    id: ID,
    tenant_id: TENANT,
    owner_id: 'alice',
    type: 'export.csv',
    status: 'running',
    progress: 0,
    step: null,
    eta_seconds: null,
    result: null,
    error: null,
    attempts: 1,
    max_attempts: 3,
    cancel_requested: false,
    version: '2',
    created_at: new Date('2026-01-01T00:00:00.123Z'),
    updated_at: new Date('2026-01-01T00:00:01.456Z'),
    started_at: new Date('2026-01-01T00:00:01.456Z'),
    completed_at: null,
    ...patch,
  }
}

/** The notification the trigger sends for `r` (with `d`, as the migration builds it). */
function notificationOf(r: JobDocumentRow, isInsert = false): JobNotification {
  const iso = (d: Date | null) => (d === null ? null : d.toISOString())
  return parseNotification(
    JSON.stringify({
      id: r.id,
      tenant_id: r.tenant_id,
      owner_id: r.owner_id,
      version: Number(r.version),
      status: r.status,
      ts: 1,
      d: {
        type: isInsert ? r.type : null,
        progress: r.progress,
        step: r.step,
        eta_seconds: r.eta_seconds,
        attempts: r.attempts,
        max_attempts: r.max_attempts,
        cancel_requested: r.cancel_requested,
        created_at: iso(r.created_at),
        updated_at: iso(r.updated_at),
        started_at: iso(r.started_at),
        completed_at: iso(r.completed_at),
      },
    }),
  )!
}

describe('documentFromNotification', () => {
  it('renders, byte for byte, what a read of the row renders', () => {
    const error = { message: 'boom', code: 'E1' }
    const rows = [
      row({ version: '2', progress: 27.5, step: 'ünïcödé "x" \\ y', eta_seconds: 12, error }),
      row({ version: '3', progress: 57.49, step: null, eta_seconds: null, error }),
      row({ version: '4', status: 'cancelled', cancel_requested: true, eta_seconds: 5, error }),
    ]
    let previous = toJobDocument(row({ version: '1', status: 'queued', started_at: null, error }))
    for (const r of rows) {
      const built = documentFromNotification(notificationOf(r), previous)
      expect(JSON.stringify(built)).toBe(JSON.stringify(toJobDocument(r)))
      previous = built!
    }
    // A finished job shows no time left, whatever the row says (as toJobDocument does).
    expect(previous.eta_seconds).toBe(0)
  })

  it('builds a new job from its notification alone', () => {
    const r = row({ version: '1', status: 'queued', attempts: 0, started_at: null })
    expect(JSON.stringify(documentFromNotification(notificationOf(r, true), undefined))).toBe(
      JSON.stringify(toJobDocument(r)),
    )
  })

  it('builds nothing when the version before it is not the one it has', () => {
    const previous = toJobDocument(row({ version: '2' }))
    expect(documentFromNotification(notificationOf(row({ version: '4' })), previous)).toBe(
      undefined,
    )
    expect(documentFromNotification(notificationOf(row({ version: '3' })), undefined)).toBe(
      undefined,
    )
    expect(documentFromNotification(notificationOf(row({ version: '2' }), true), previous)).toBe(
      undefined,
    )
  })

  it('builds nothing for a notification without small fields, or a deletion', () => {
    const previous = toJobDocument(row({ version: '2' }))
    const { small: _small, ...plain } = notificationOf(row({ version: '3' }))
    expect(documentFromNotification(plain, previous)).toBe(undefined)
    expect(
      documentFromNotification(
        { ...notificationOf(row({ version: '3' })), status: 'deleted' },
        previous,
      ),
    ).toBe(undefined)
  })
})

describe('parseNotification and small fields', () => {
  const base = { id: ID, tenant_id: TENANT, owner_id: null, version: 3, status: 'running' }

  it('keeps a notification whose small fields are malformed, without them', () => {
    for (const d of [{ progress: 'x' }, { ...notificationOf(row({})).small, created_at: 'now' }]) {
      const n = parseNotification(JSON.stringify({ ...base, d }))
      expect(n).toMatchObject({ id: ID, version: 3 })
      expect(n?.small).toBeUndefined()
    }
  })

  it('reads `d: null` (a change the hub must read) as no small fields', () => {
    expect(parseNotification(JSON.stringify({ ...base, d: null }))?.small).toBeUndefined()
  })
})
