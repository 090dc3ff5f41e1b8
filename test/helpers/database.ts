// One database per test file, cloned from the migrated template (see global-setup.ts).
import { randomBytes } from 'node:crypto'
import pg from 'pg'

export interface TestDatabase {
  name: string
  url: string
  drop(): Promise<void>
}

export function serverUrl(): string {
  const url = process.env.JOBWIRE_TEST_SERVER_URL
  if (!url)
    throw new Error(
      'JOBWIRE_TEST_SERVER_URL is unset: run integration tests through jest (global-setup.ts)',
    )
  return url
}

export function databaseUrl(name: string): string {
  const u = new URL(serverUrl())
  u.pathname = `/${name}`
  return u.toString()
}

export async function createTestDatabase(): Promise<TestDatabase> {
  const template = process.env.JOBWIRE_TEST_TEMPLATE!
  const name = `jobwire_test_${randomBytes(6).toString('hex')}`
  const admin = new pg.Client({ connectionString: serverUrl() })
  await admin.connect()
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        await admin.query(`CREATE DATABASE ${name} TEMPLATE ${template}`)
        break
      } catch (error) {
        // Two files cloning the same template at the same instant: try again.
        if (attempt < 20 && /being accessed by other users/.test(String(error))) {
          await new Promise((r) => setTimeout(r, 100 + Math.random() * 200))
          continue
        }
        throw error
      }
    }
  } finally {
    await admin.end()
  }
  return {
    name,
    url: databaseUrl(name),
    drop: async () => {
      const client = new pg.Client({ connectionString: serverUrl() })
      await client.connect()
      try {
        // pool.end() resolves before its sockets are closed: give the file's pools up to 3 s
        // to leave, so that FORCE does not kill a connection whose pool has no 'error'
        // listener any more (an unhandled error would land in the next test of this worker).
        for (let i = 0; i < 60; i++) {
          const { rows } = await client.query<{ n: number }>(
            'SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1',
            [name],
          )
          if (rows[0]!.n === 0) break
          await new Promise((resolve) => setTimeout(resolve, 50))
        }
        await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
      } finally {
        await client.end()
      }
    },
  }
}
