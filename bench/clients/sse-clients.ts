// Load generator: many SSE clients in one process, as an EventSource user would run them.
// Each connection parses the stream, applies every patch to its document (the `test` op on
// /version must hold), and records when it parsed each event on the shared monotonic clock.
//   * latency: a patch whose document carries `step = "t:<ms>"` (the writer's send time) adds
//     one sample "now − send time";
//   * versions: a jump of more than one is counted as merged (the patch covered several
//     versions and applied cleanly); a failed test op or a backward version is an error;
//   * arm/collect: the time each connection first reached a version (fan-out).
import { Agent, request, type ClientRequest, type IncomingMessage } from 'node:http'
import fastJsonPatch, { type Operation } from 'fast-json-patch'
import { nowMs, openConcurrently, serve, sleep } from '../lib/child.js'

const { applyPatch, compare } = fastJsonPatch

interface Conn {
  job: string
  req: ClientRequest
  res: IncomingMessage | undefined
  doc: Record<string, unknown> | undefined
  version: number
  buf: string
  isEnded: boolean
  armedAt: number | undefined
}

export interface OpenArgs {
  url: string
  token: string
  targets: Array<{ job: string; path: string }>
  concurrency: number
  timeoutMs: number
}

export interface SseClientStats {
  connections: number
  open: number
  events: number
  snapshots: number
  patches: number
  merged: number
  errors: number
  testFailures: number
  idMismatches: number
  backwards: number
  /** Size of the last patch frame received (bytes, with its blank line). */
  lastPatchBytes: number
  latencies: number[]
  errorSamples: string[]
}

const agent = new Agent({ keepAlive: false, maxSockets: Infinity })
const conns: Conn[] = []
let counters = freshCounters()
let latencies: number[] = []
let arm: { version: number; job: string | undefined; total: number; reached: number } | undefined
let onArmDone: (() => void) | undefined

function freshCounters() {
  return {
    events: 0,
    snapshots: 0,
    patches: 0,
    merged: 0,
    errors: 0,
    testFailures: 0,
    idMismatches: 0,
    backwards: 0,
    lastPatchBytes: 0,
    errorSamples: [] as string[],
  }
}

function recordError(message: string): void {
  counters.errors++
  if (counters.errorSamples.length < 5) counters.errorSamples.push(message)
}

function handleEvent(conn: Conn, frame: string): void {
  let event = 'message'
  let data = ''
  let id: string | undefined
  for (const line of frame.split('\n')) {
    if (line.startsWith(':') || line === '') continue
    const colon = line.indexOf(':')
    const field = colon < 0 ? line : line.slice(0, colon)
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '')
    if (field === 'event') event = value
    else if (field === 'data') data = data ? `${data}\n${value}` : value
    else if (field === 'id') id = value
  }
  if (event === 'message' && data === '') return // retry: or comment-only frame
  counters.events++
  if (event === 'end') {
    conn.isEnded = true
    return
  }
  const before = conn.version
  if (event === 'snapshot') {
    counters.snapshots++
    conn.doc = JSON.parse(data) as Record<string, unknown>
  } else if (event === 'patch') {
    counters.patches++
    counters.lastPatchBytes = Buffer.byteLength(frame) + 2
    if (!conn.doc) return recordError('patch before snapshot')
    try {
      applyPatch(conn.doc, JSON.parse(data) as Operation[], false, true)
    } catch (error) {
      counters.testFailures++
      return recordError(`patch failed: ${(error as Error).message}`)
    }
  } else {
    return
  }
  const t = nowMs()
  conn.version = Number(conn.doc.version)
  if (id !== undefined && Number(id) !== conn.version) counters.idMismatches++
  if (event === 'patch') {
    if (conn.version <= before) counters.backwards++
    else if (conn.version > before + 1) counters.merged += conn.version - before - 1
    const step = conn.doc.step
    if (typeof step === 'string' && step.startsWith('t:')) latencies.push(t - Number(step.slice(2)))
  }
  if (
    arm &&
    conn.armedAt === undefined &&
    conn.version >= arm.version &&
    (arm.job === undefined || arm.job === conn.job)
  ) {
    conn.armedAt = t
    if (++arm.reached === arm.total) onArmDone?.()
  }
}

function openOne(args: OpenArgs, target: { job: string; path: string }): Promise<Conn> {
  return new Promise<Conn>((resolve, reject) => {
    const url = new URL(target.path, args.url)
    const req = request(url, {
      agent,
      headers: { authorization: `Bearer ${args.token}`, accept: 'text/event-stream' },
    })
    const conn: Conn = {
      job: target.job,
      req,
      res: undefined,
      doc: undefined,
      version: 0,
      buf: '',
      isEnded: false,
      armedAt: undefined,
    }
    const timer = setTimeout(() => {
      req.destroy(new Error('no snapshot in time'))
    }, args.timeoutMs)
    let settled = false
    const settle = (error?: Error) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      if (error) reject(error)
      else resolve(conn)
    }
    req.on('error', (error) => {
      conn.isEnded = true
      settle(error)
    })
    req.on('response', (res) => {
      if (res.statusCode !== 200) {
        res.resume()
        settle(new Error(`HTTP ${res.statusCode}`))
        return
      }
      conn.res = res
      res.socket.setNoDelay(true)
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => {
        conn.buf += chunk
        let idx: number
        while ((idx = conn.buf.indexOf('\n\n')) >= 0) {
          const frame = conn.buf.slice(0, idx)
          conn.buf = conn.buf.slice(idx + 2)
          try {
            handleEvent(conn, frame)
          } catch (error) {
            recordError(`bad event: ${(error as Error).message}`)
          }
        }
        if (conn.doc) settle()
      })
      res.on('end', () => {
        conn.isEnded = true
        settle(new Error('stream ended before the snapshot'))
      })
    })
    req.end()
  })
}

function open(args: OpenArgs) {
  return openConcurrently(args.targets.length, args.concurrency, async (i) => {
    conns.push(await openOne(args, args.targets[i]!))
  })
}

serve({
  open: (args: OpenArgs) => open(args),
  /** Starts recording when each connection (on `job`, or all) first reaches `version`. */
  arm: (args: { version: number; job?: string }) => {
    const mine = conns.filter((c) => !c.isEnded && (args.job === undefined || c.job === args.job))
    arm = { version: args.version, job: args.job, total: mine.length, reached: 0 }
    for (const c of conns) c.armedAt = undefined
    return { armed: mine.length }
  },
  /** Waits (bounded) for every armed connection; returns the times they reached the version. */
  collect: async (args: { timeoutMs: number }) => {
    const current = arm
    if (!current) throw new Error('collect without arm')
    if (current.reached < current.total) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, args.timeoutMs)
        onArmDone = () => {
          clearTimeout(timer)
          resolve()
        }
      })
    }
    onArmDone = undefined
    arm = undefined
    const times = conns.filter((c) => c.armedAt !== undefined).map((c) => c.armedAt!)
    return { total: current.total, reached: times.length, times }
  },
  stats: (args: { reset?: boolean }): SseClientStats => {
    const out = {
      connections: conns.length,
      open: conns.filter((c) => !c.isEnded).length,
      ...counters,
      latencies,
    }
    if (args.reset) {
      counters = freshCounters()
      latencies = []
    }
    return out
  },
  /**
   * Waits (bounded) until every connection on a job of `docs` has that version, then compares
   * its document with the row as the API returns it.
   */
  verify: async (args: { docs: Record<string, Record<string, unknown>>; timeoutMs: number }) => {
    const mine = conns.filter((c) => args.docs[c.job])
    const deadline = nowMs() + args.timeoutMs
    const isBehind = (c: Conn) => c.version < Number(args.docs[c.job]!.version)
    while (mine.some(isBehind) && nowMs() < deadline) await sleep(20)
    let behind = 0
    let mismatched = 0
    const samples: unknown[] = []
    for (const c of mine) {
      if (isBehind(c)) behind++
      else {
        const diff = compare(c.doc ?? {}, args.docs[c.job]!)
        if (diff.length > 0) {
          mismatched++
          if (samples.length < 3) samples.push({ job: c.job, diff })
        }
      }
    }
    return { checked: mine.length, behind, mismatched, samples }
  },
  /** Stops reading every connection (a slow client): the server's socket buffer fills up. */
  pauseAll: () => {
    for (const c of conns) c.res?.socket.pause()
    return conns.length
  },
  resumeAll: () => {
    for (const c of conns) c.res?.socket.resume()
    return conns.length
  },
  closeAll: () => {
    for (const c of conns) c.req.destroy()
    conns.length = 0
    return true
  },
})
