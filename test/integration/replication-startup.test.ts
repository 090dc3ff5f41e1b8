// EVENT_SOURCE=replication on a server that cannot serve it (the CI server runs
// wal_level=replica): start-up stops with one message naming EVENT_SOURCE and what to change,
// instead of a stream that retries forever.
import pg from 'pg'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import { startTestService } from '../helpers/service.js'

let database: TestDatabase
let walLevel: string

beforeAll(async () => {
  database = await createTestDatabase()
  const client = new pg.Client({ connectionString: database.url })
  await client.connect()
  walLevel = (await client.query<{ wal_level: string }>('SHOW wal_level')).rows[0]!.wal_level
  await client.end()
})
afterAll(async () => {
  await database?.drop()
})

describe('EVENT_SOURCE=replication start-up', () => {
  it('refuses a server without wal_level=logical, saying what to change', async () => {
    if (walLevel === 'logical') return // test/replication/ covers a logical server
    await expect(startTestService(database.url, { EVENT_SOURCE: 'replication' })).rejects.toThrow(
      /^EVENT_SOURCE=replication cannot start: wal_level is replica, it must be logical: ALTER SYSTEM SET wal_level = logical .* Or set EVENT_SOURCE=notify/,
    )
  })
})
