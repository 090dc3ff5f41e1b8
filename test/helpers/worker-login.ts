// A worker's own LOGIN role, a member of jobwire_worker, as docs/worker-contract.md §1 tells
// operators to create one. Roles are cluster-wide: each gets a unique name and is dropped at
// the end of its file.
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { serverUrl } from './database.js'

export interface WorkerLogin {
  name: string
  /** `databaseUrl` with this login as its user (no password: the test cluster trusts 127.0.0.1). */
  url(databaseUrl: string): string
  /** Works before or after the file's database is dropped. */
  drop(): Promise<void>
}

/**
 * Creates the login in the cluster of `databaseUrl`. `defaultRole`: also
 * `ALTER ROLE … IN DATABASE … SET role = 'jobwire_worker'`, so every session it opens there
 * (through a transaction pooler too) starts as jobwire_worker; without it, the login has the
 * role's rights by inheritance and current_user stays the login.
 */
export async function createWorkerLogin(
  databaseUrl: string,
  options: { defaultRole?: boolean } = {},
): Promise<WorkerLogin> {
  const name = `jobwire_test_worker_${randomBytes(5).toString('hex')}`
  const database = decodeURIComponent(new URL(databaseUrl).pathname.slice(1))
  const admin = new pg.Client({ connectionString: databaseUrl })
  await admin.connect()
  try {
    await admin.query(`CREATE ROLE ${name} LOGIN IN ROLE jobwire_worker`)
    if (options.defaultRole) {
      await admin.query(
        `ALTER ROLE ${name} IN DATABASE ${pg.escapeIdentifier(database)} SET role = 'jobwire_worker'`,
      )
    }
  } finally {
    await admin.end()
  }
  return {
    name,
    url: (base) => {
      const u = new URL(base)
      u.username = name
      u.password = ''
      return u.toString()
    },
    drop: async () => {
      const client = new pg.Client({ connectionString: serverUrl() })
      await client.connect()
      try {
        await client.query(`DROP ROLE IF EXISTS ${name}`)
      } finally {
        await client.end()
      }
    },
  }
}
