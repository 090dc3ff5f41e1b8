// Load generator: many long-poll waiters in one process (`GET /v1/jobs/:id/wait?since=V`).
// Each request is sent and left parked; the answer's arrival time (full body parsed) is
// recorded on the shared monotonic clock, with whether it was a real change or a time-out.
import { Agent, request, type ClientRequest } from 'node:http'
import { nowMs, serve } from '../lib/child.js'

export interface ParkArgs {
  url: string
  token: string
  targets: Array<{ job: string; since: number }>
  timeoutSeconds: number
  concurrency: number
}

interface Waiter {
  req: ClientRequest
  since: number
  answeredAt: number | undefined
}

const agent = new Agent({ keepAlive: false, maxSockets: Infinity })
const waiters: Waiter[] = []
let answered = 0
let changed = 0
let timedOut = 0
let errors = 0
const errorSamples: string[] = []
let onAllAnswered: (() => void) | undefined
let isClosing = false

function recordError(message: string): void {
  errors++
  if (errorSamples.length < 5) errorSamples.push(message)
}

function finish(w: Waiter): void {
  w.answeredAt = nowMs()
  if (++answered === waiters.length) onAllAnswered?.()
}

function send(args: ParkArgs, target: { job: string; since: number }): Promise<void> {
  return new Promise<void>((resolve) => {
    const url = new URL(
      `/v1/jobs/${target.job}/wait?since=${target.since}&timeout=${args.timeoutSeconds}`,
      args.url,
    )
    const req = request(url, { agent, headers: { authorization: `Bearer ${args.token}` } })
    const w: Waiter = { req, since: target.since, answeredAt: undefined }
    waiters.push(w)
    req.on('error', (error) => {
      if (w.answeredAt !== undefined || isClosing) return
      recordError(error.message)
      finish(w)
      resolve()
    })
    req.on('response', (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => (body += chunk))
      res.on('end', () => {
        if (res.statusCode !== 200) recordError(`HTTP ${res.statusCode}: ${body.slice(0, 120)}`)
        else if (res.headers['jobwire-timed-out'] === 'true') timedOut++
        else {
          const doc = JSON.parse(body) as { version: number }
          if (doc.version > w.since) changed++
          else recordError(`answered with version ${doc.version} ≤ since ${w.since}`)
        }
        finish(w)
      })
    })
    req.on('finish', () => resolve())
    req.end()
  })
}

serve({
  /** Sends every request (bounded concurrency while connecting); does not wait for answers. */
  park: async (args: ParkArgs) => {
    let next = 0
    const started = nowMs()
    const worker = async () => {
      while (next < args.targets.length) await send(args, args.targets[next++]!)
    }
    await Promise.all(Array.from({ length: Math.max(1, args.concurrency) }, worker))
    return { sent: args.targets.length, ms: nowMs() - started }
  },
  /** Waits (bounded) until every waiter is answered; returns the answer times. */
  collect: async (args: { timeoutMs: number }) => {
    if (answered < waiters.length) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, args.timeoutMs)
        onAllAnswered = () => {
          clearTimeout(timer)
          resolve()
        }
      })
    }
    onAllAnswered = undefined
    return {
      total: waiters.length,
      answered,
      changed,
      timedOut,
      errors,
      errorSamples,
      times: waiters.filter((w) => w.answeredAt !== undefined).map((w) => w.answeredAt!),
    }
  },
  stats: () => ({ total: waiters.length, answered, changed, timedOut, errors, errorSamples }),
  closeAll: () => {
    isClosing = true
    for (const w of waiters) w.req.destroy()
    return true
  },
})
