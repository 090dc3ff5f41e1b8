// The README's "change a row yourself" example, run as printed: bash runs the block from
// README.md with only the service's URL and the database URL put in for the defaults of
// `npm start` (port 3000, the embedded PostgreSQL on 54329), and the token a user exports.
// It must work in the order shown — a job no worker claims, moved by two psql UPDATEs, the
// background stream printing each change and then `end`.
import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { PROJECT_ROOT } from '../../src/project-root.js'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import { requiresTool } from '../helpers/requires.js'
import { newTenant, startTestService, type TestService } from '../helpers/service.js'

const run = promisify(execFile)
const README = readFileSync(join(PROJECT_ROOT, 'README.md'), 'utf8')
const EMBEDDED_URL = 'postgres://postgres:jobwire-embedded@127.0.0.1:54329/jobwire'

const hasPsql = await run('psql', ['--version']).then(
  () => true,
  () => false,
)
const { it: itWithPsql } = requiresTool(
  'psql',
  hasPsql ? undefined : 'no psql on PATH (apt-get install -y postgresql-client)',
  import.meta.url,
)

/** The shell block of the README that contains `marker`. */
function shellBlock(marker: string): string {
  const blocks = [...README.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!)
  const block = blocks.find((b) => b.includes(marker))
  if (!block) throw new Error(`README.md has no sh block containing ${marker}`)
  return block
}

let database: TestDatabase
let service: TestService

beforeAll(async () => {
  database = await createTestDatabase()
  service = await startTestService(database.url)
})

afterAll(async () => {
  await service?.close()
  await database?.drop()
})

itWithPsql(
  'runs the psql example in the order shown: the stream follows both UPDATEs',
  async () => {
    const block = shellBlock(EMBEDDED_URL)
    expect(block).toContain('localhost:3000')
    const script = block
      .replaceAll('localhost:3000', new URL(service.url).host)
      .replaceAll(EMBEDDED_URL, database.url)
    // --norc: bash reads ~/.bashrc when its stdin is a socket, as node's pipes are.
    const { stdout, stderr } = await run('bash', ['--norc', '-e', '-c', script], {
      env: { PATH: process.env.PATH, TOKEN: newTenant().admin },
      timeout: 30_000,
    })
    expect(stderr).toBe('')
    expect(stdout.match(/^UPDATE 1$/gm)).toHaveLength(2)
    expect(stdout).toMatch(/^event: snapshot$/m)
    expect(stdout).toContain('"value":"by hand"')
    expect(stdout).toMatch(/^event: end\ndata: \{[^\n]*"status":"completed"/m)
  },
  60_000,
)
