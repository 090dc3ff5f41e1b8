// Runs examples/python/worker.py with Debian's Python and psycopg 3 (apt-get install
// python3-psycopg), as a separate process a test can signal. findPsycopg() tells a test file
// whether it can run, or why not (the file then reports itself skipped with the reason).
import { execFile, spawn } from 'node:child_process'
import { promisify } from 'node:util'
import { PROJECT_ROOT } from '../../src/project-root.js'

const run = promisify(execFile)

/** Debian's interpreter, where python3-psycopg installs; PYTHON_BIN overrides it. */
export const PYTHON = process.env.PYTHON_BIN ?? '/usr/bin/python3'

/** undefined when PYTHON imports psycopg 3, else the reason it cannot. */
export async function findPsycopg(): Promise<string | undefined> {
  try {
    const { stdout } = await run(PYTHON, ['-c', 'import psycopg; print(psycopg.__version__)'], {
      timeout: 10_000,
    })
    return /^3\./.test(stdout.trim()) ? undefined : `psycopg ${stdout.trim()} is not psycopg 3`
  } catch (error) {
    return `${PYTHON} cannot import psycopg (apt-get install -y python3-psycopg, or set PYTHON_BIN): ${String(error).split('\n')[0]}`
  }
}

export interface PythonWorker {
  pid: number
  /** Everything the worker logged so far (its log goes to stderr). */
  output(): string
  /** Resolves with the exit code (null when killed by a signal). */
  exited: Promise<number | null>
  /** Sends `signal` (default SIGTERM) to this PID only, and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<number | null>
}

/** Starts the example worker with WORKER_* settings from `env` and DATABASE_URL. */
export function startPythonWorker(env: Record<string, string>): PythonWorker {
  const child = spawn(PYTHON, ['examples/python/worker.py'], {
    cwd: PROJECT_ROOT,
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      PYTHONUNBUFFERED: '1',
      PYTHONDONTWRITEBYTECODE: '1', // nothing left in examples/
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()))
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()))
  let hasExited = false
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      hasExited = true
      resolve(code)
    }),
  )
  return {
    pid: child.pid!,
    output: () => output,
    exited,
    stop: async (signal = 'SIGTERM') => {
      if (!hasExited) process.kill(child.pid!, signal)
      const timer = setTimeout(() => !hasExited && process.kill(child.pid!, 'SIGKILL'), 10_000)
      try {
        return await exited
      } finally {
        clearTimeout(timer)
      }
    },
  }
}
