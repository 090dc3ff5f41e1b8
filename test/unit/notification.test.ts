// The NOTIFY payload parser: accepts what the trigger sends, rejects anything else without
// throwing (a malformed payload is counted by the hub, never a crash).
import { parseNotification } from '../../src/events/notification.js'

const valid = {
  id: '6f1c2d3e-4b5a-4c6d-8e7f-901234567890',
  tenant_id: '0a1b2c3d-4e5f-4a6b-9c8d-7e6f5a4b3c2d',
  owner_id: 'alice',
  version: 7,
  status: 'running',
  ts: 1767225600123.456,
}

describe('parseNotification', () => {
  it('reads the payload the trigger sends', () => {
    expect(parseNotification(JSON.stringify(valid))).toEqual({
      id: valid.id,
      tenantId: valid.tenant_id,
      ownerId: 'alice',
      version: 7,
      status: 'running',
      ts: valid.ts,
    })
  })

  it('accepts a job without owner and a payload without ts', () => {
    const { ts: _ts, ...rest } = valid
    expect(parseNotification(JSON.stringify({ ...rest, owner_id: null }))).toMatchObject({
      ownerId: null,
      ts: undefined,
    })
  })

  it('reads a deletion', () => {
    expect(parseNotification(JSON.stringify({ ...valid, status: 'deleted' }))?.status).toBe(
      'deleted',
    )
  })

  it.each([
    ['no payload', undefined],
    ['an empty string', ''],
    ['not JSON', '{oops'],
    ['JSON null', 'null'],
    ['a number', '42'],
    ['an array', JSON.stringify([valid])],
    ['a missing id', JSON.stringify({ ...valid, id: undefined })],
    ['an id that is no uuid', JSON.stringify({ ...valid, id: 'job-1' })],
    ['an upper-case uuid', JSON.stringify({ ...valid, id: valid.id.toUpperCase() })],
    ['a tenant that is no uuid', JSON.stringify({ ...valid, tenant_id: 42 })],
    ['an owner that is a number', JSON.stringify({ ...valid, owner_id: 7 })],
    ['a missing owner', JSON.stringify({ ...valid, owner_id: undefined })],
    ['a version as text', JSON.stringify({ ...valid, version: '7' })],
    ['version 0', JSON.stringify({ ...valid, version: 0 })],
    ['a negative version', JSON.stringify({ ...valid, version: -1 })],
    ['a fractional version', JSON.stringify({ ...valid, version: 1.5 })],
    ['an unsafe version', JSON.stringify({ ...valid, version: 2 ** 60 })],
    ['a missing status', JSON.stringify({ ...valid, status: undefined })],
    ['more than 8000 bytes', JSON.stringify({ ...valid, pad: 'x'.repeat(8000) })],
  ])('rejects %s', (_name, payload) => {
    expect(parseNotification(payload)).toBeUndefined()
  })

  it('ignores a ts that is not a finite number', () => {
    expect(parseNotification(JSON.stringify({ ...valid, ts: 'soon' }))?.ts).toBeUndefined()
  })
})
