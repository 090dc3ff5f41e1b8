// Runs Debian's pgbouncer for a test file: found once at load time (a file without one reports
// itself skipped, with the reason), started in transaction mode on a free port in front of the
// file's own database, stopped by its PID. Used by test/integration/pgbouncer.test.ts (the
// service behind the pooler) and worker-pgbouncer.test.ts (workers behind it).
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { chown, readFile, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { delimiter, join } from 'node:path'
import { promisify } from 'node:util'
import pg from 'pg'

const run = promisify(execFile)

export interface Runner {
  bin: string
  /** The user pgbouncer switches to with -u (it refuses to run as root), if we are root. */
  runAs: { name: string; uid: number; gid: number } | undefined
}

/** A runnable pgbouncer, or why there is none (a test file reports itself skipped with it). */
export async function findPgbouncer(): Promise<Runner | string> {
  const candidates = [
    process.env.PGBOUNCER_BIN,
    '/usr/sbin/pgbouncer',
    '/usr/bin/pgbouncer',
    '/usr/local/bin/pgbouncer',
    ...(process.env.PATH ?? '').split(delimiter).map((dir) => join(dir, 'pgbouncer')),
  ].filter((c): c is string => !!c)
  let bin: string | undefined
  for (const candidate of new Set(candidates)) {
    try {
      await run(candidate, ['--version'], { timeout: 5000 })
      bin = candidate
      break
    } catch {
      // not there, or not runnable
    }
  }
  if (!bin) return 'no pgbouncer binary (apt-get install -y pgbouncer, or set PGBOUNCER_BIN)'
  if (process.getuid?.() !== 0) return { bin, runAs: undefined }
  for (const name of ['postgres', 'nobody']) {
    try {
      const uid = Number((await run('id', ['-u', name])).stdout.trim())
      const gid = Number((await run('id', ['-g', name])).stdout.trim())
      return { bin, runAs: { name, uid, gid } }
    } catch {
      // no such user
    }
  }
  return 'running as root and no "postgres" or "nobody" user for pgbouncer -u'
}

export interface Bouncer {
  port: number
  pid: number
  /** A connection string for `database` through the pooler, as `user` (default: the target's). */
  url(database: string, user?: string): string
  /** One statement on the admin console (SHOW …), as the target's user. */
  admin<T extends pg.QueryResultRow>(text: string): Promise<T[]>
  log(): Promise<string>
  stop(): Promise<void>
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}

/** A libpq key=value value: quoted, with ' and \ escaped. */
function connValue(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`
}

export interface PgbouncerOptions {
  /** Server connections PgBouncer may open per user (default_pool_size). */
  poolSize: number
  /** Server connections to the database for all users together; default poolSize. */
  maxDbConnections?: number
  /**
   * Whom the server connections log in as. 'fixed' (default): the target URL's user, whoever
   * the client is (PgBouncer's `user=` in [databases]). 'client': the client's own user, so a
   * per-role setting (ALTER ROLE … SET) reaches the server sessions; PgBouncer then keeps one
   * pool per user.
   */
  serverLogin?: 'fixed' | 'client'
  /** More users that may connect, besides the target URL's (auth_file; trust, no passwords). */
  users?: readonly string[]
}

/**
 * Starts Debian's pgbouncer in transaction mode on a free 127.0.0.1 port in front of the
 * database of `targetUrl`, with its files in `dir`. Stop it with stop(): only this PID.
 */
export async function startPgbouncer(
  runner: Runner,
  targetUrl: string,
  dir: string,
  options: PgbouncerOptions,
): Promise<Bouncer> {
  const target = new URL(targetUrl)
  const database = decodeURIComponent(target.pathname.slice(1))
  const user = decodeURIComponent(target.username) || 'postgres'
  const password = decodeURIComponent(target.password)
  const host = target.searchParams.get('host') ?? target.hostname ?? '127.0.0.1'
  const serverPort = target.port || '5432'
  const port = await freePort()
  const logfile = join(dir, 'pgbouncer.log')
  const isFixedLogin = (options.serverLogin ?? 'fixed') === 'fixed'
  const server = [
    `host=${connValue(host.replace(/^\[(.*)\]$/, '$1'))}`,
    `port=${serverPort}`,
    `dbname=${connValue(database)}`,
    ...(isFixedLogin ? [`user=${connValue(user)}`] : []),
    ...(password ? [`password=${connValue(password)}`] : []),
  ].join(' ')
  const ini = [
    '[databases]',
    `${database} = ${server}`,
    '',
    '[pgbouncer]',
    'listen_addr = 127.0.0.1',
    `listen_port = ${port}`,
    // No unix socket: nothing outside this test should find this pooler.
    'unix_socket_dir =',
    // Clients are trusted here; the server login uses the password above. auth_file lists
    // the user, which trust still requires.
    'auth_type = trust',
    `auth_file = ${join(dir, 'userlist.txt')}`,
    `admin_users = ${user}`,
    'pool_mode = transaction',
    `default_pool_size = ${options.poolSize}`,
    `max_db_connections = ${options.maxDbConnections ?? options.poolSize}`,
    'min_pool_size = 0',
    'reserve_pool_size = 0',
    'max_client_conn = 200',
    // Not used in transaction mode anyway: state must not outlive a transaction.
    'server_reset_query =',
    // As in deploy/docker-compose.pgbouncer.yml. node-postgres never sends it (JDBC does);
    // statement_timeout is deliberately NOT listed: see the test on startup parameters.
    'ignore_startup_parameters = extra_float_digits',
    'server_login_retry = 1',
    `logfile = ${logfile}`,
    `pidfile = ${join(dir, 'pgbouncer.pid')}`,
    '',
  ].join('\n')
  const iniPath = join(dir, 'pgbouncer.ini')
  await writeFile(iniPath, ini, { mode: 0o600 })
  const userlist = [...new Set([user, ...(options.users ?? [])])]
    .map((name) => `"${name.replace(/"/g, '""')}" ""\n`)
    .join('')
  await writeFile(join(dir, 'userlist.txt'), userlist, { mode: 0o600 })
  if (runner.runAs) {
    for (const path of [dir, iniPath, join(dir, 'userlist.txt')])
      await chown(path, runner.runAs.uid, runner.runAs.gid)
  }

  // Foreground (no -d): the child's PID is pgbouncer's, so afterAll stops exactly this one.
  const args = [...(runner.runAs ? ['-u', runner.runAs.name] : []), iniPath]
  const child: ChildProcess = spawn(runner.bin, args, { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => resolve(code)),
  )
  let hasExited = false
  void exited.then(() => (hasExited = true))
  const readLog = () => readFile(logfile, 'utf8').catch(() => '')

  const url = (db: string, as = user) => {
    const u = new URL(`postgres://127.0.0.1:${port}/`)
    u.username = encodeURIComponent(as)
    u.pathname = `/${encodeURIComponent(db)}`
    return u.toString()
  }
  const query = async <T extends pg.QueryResultRow>(db: string, text: string) => {
    const client = new pg.Client({ connectionString: url(db) })
    client.on('error', () => undefined)
    await client.connect()
    try {
      return (await client.query<T>(text)).rows
    } finally {
      await client.end().catch(() => undefined)
    }
  }

  // Ready once a query through the pooler reaches PostgreSQL.
  const deadline = Date.now() + 15_000
  for (;;) {
    if (hasExited)
      throw new Error(`pgbouncer exited at start-up:\n${stderr}\n${(await readLog()).slice(-2000)}`)
    try {
      await query(database, 'SELECT 1')
      break
    } catch (error) {
      if (Date.now() > deadline) {
        child.kill('SIGKILL')
        throw new Error(`pgbouncer did not answer on ${port}\n${stderr}`, { cause: error })
      }
      await new Promise((r) => setTimeout(r, 100))
    }
  }

  return {
    port,
    pid: child.pid!,
    url,
    admin: (text) => query('pgbouncer', text),
    log: readLog,
    stop: async () => {
      if (hasExited) return
      // SIGTERM: immediate shutdown. Only this PID, never a name.
      process.kill(child.pid!, 'SIGTERM')
      const timer = setTimeout(() => !hasExited && process.kill(child.pid!, 'SIGKILL'), 5000)
      await exited
      clearTimeout(timer)
    },
  }
}
