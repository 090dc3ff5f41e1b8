// Two instances starting on one new database migrate at the same moment: the second waits for
// the first one's migration (node-pg-migrate's advisory lock in 'wait' mode) instead of
// failing with "Another migration is already running", and finds nothing left to apply.
import { randomBytes } from 'node:crypto'
import { readdirSync } from 'node:fs'
import pg from 'pg'
import { runMigrations } from '../../src/db/migrate.js'
import { MIGRATIONS_DIR } from '../../src/project-root.js'
import { databaseUrl, serverUrl } from '../helpers/database.js'

const name = `jobwire_test_empty_${randomBytes(6).toString('hex')}`

async function admin(text: string): Promise<void> {
  const client = new pg.Client({ connectionString: serverUrl() })
  await client.connect()
  try {
    await client.query(text)
  } finally {
    await client.end()
  }
}

beforeAll(() => admin(`CREATE DATABASE ${name}`))
afterAll(() => admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`))

it('two migrations started at once on a new database both succeed, and apply each file once', async () => {
  const url = databaseUrl(name)
  const [first, second] = await Promise.all([runMigrations(url), runMigrations(url)])
  const files = readdirSync(MIGRATIONS_DIR).filter((f) => /\.(sql|js|ts)$/.test(f))
  // One of them applied everything; the other waited and found nothing to do.
  expect([first.length, second.length].sort((a, b) => a - b)).toEqual([0, files.length])
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    const { rows } = await client.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM pgmigrations',
    )
    expect(rows[0]!.n).toBe(files.length)
  } finally {
    await client.end()
  }
})
