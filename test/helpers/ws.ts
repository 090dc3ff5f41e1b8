// A WebSocket test client over the `ws` package: collects every server message and lets a
// test await the next one that matches (by type, job, or any predicate) with a timeout.
import WebSocket, { type ClientOptions } from 'ws'

export interface WsMessage {
  type: string
  job?: string
  version?: number
  status?: number | string
  detail?: string
  doc?: Record<string, unknown>
  patch?: Array<{ op: string; path: string; value?: unknown }>
  [key: string]: unknown
}

export type WsMatch = string | ((message: WsMessage) => boolean)

export interface WsClient {
  socket: WebSocket
  /** Every message received, in order. */
  messages: WsMessage[]
  /** The earliest message not yet taken that matches (a type, or a predicate). */
  next(match?: WsMatch, timeoutMs?: number): Promise<WsMessage>
  /** The next message of `type` about `job`. */
  nextFor(job: string, type: string, timeoutMs?: number): Promise<WsMessage>
  send(message: unknown): void
  /** Resolves with the close code and reason once the socket closed. */
  closed: Promise<{ code: number; reason: string }>
  close(): void
}

/** Opens a socket; rejects with the HTTP status when the upgrade is refused. */
export function openWs(url: string, options: ClientOptions = {}): Promise<WsClient> {
  const socket = new WebSocket(url, options)
  const messages: WsMessage[] = []
  const taken = new Set<number>()
  let waiters: Array<() => void> = []
  let isClosed = false
  const notify = () => {
    const w = waiters
    waiters = []
    for (const f of w) f()
  }
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    socket.on('close', (code, reason) => {
      isClosed = true
      notify()
      resolve({ code, reason: reason.toString() })
    })
  })
  socket.on('message', (data) => {
    messages.push(JSON.parse(String(data)) as WsMessage)
    notify()
  })
  const matches = (m: WsMessage, match: WsMatch | undefined) =>
    match === undefined || (typeof match === 'string' ? m.type === match : match(m))
  const next = (match?: WsMatch, timeoutMs = 5000) =>
    new Promise<WsMessage>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`no matching message within ${timeoutMs} ms; got ${describe()}`))
      }, timeoutMs)
      const check = () => {
        for (let i = 0; i < messages.length; i++) {
          if (!taken.has(i) && matches(messages[i]!, match)) {
            taken.add(i)
            clearTimeout(timer)
            return resolve(messages[i]!)
          }
        }
        if (isClosed) {
          clearTimeout(timer)
          return reject(new Error(`socket closed before a matching message; got ${describe()}`))
        }
        waiters.push(check)
      }
      check()
    })
  const describe = () => JSON.stringify(messages.map((m) => [m.type, m.job, m.version, m.status]))
  const client: WsClient = {
    socket,
    messages,
    next,
    nextFor: (job, type, timeoutMs) => next((m) => m.job === job && m.type === type, timeoutMs),
    send: (message) => socket.send(typeof message === 'string' ? message : JSON.stringify(message)),
    closed,
    close: () => socket.close(),
  }
  return new Promise((resolve, reject) => {
    socket.once('open', () => resolve(client))
    socket.once('unexpected-response', (_req, res) => {
      reject(Object.assign(new Error(`upgrade refused: ${res.statusCode}`), { res }))
      res.resume()
      socket.terminate()
    })
    socket.once('error', reject)
  })
}

/** The HTTP status of a refused upgrade (and its headers and body); throws if it succeeds. */
export async function refusedUpgrade(
  url: string,
  options: ClientOptions = {},
): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  const socket = new WebSocket(url, options)
  return new Promise((resolve, reject) => {
    socket.once('open', () => {
      socket.terminate()
      reject(new Error('the upgrade succeeded'))
    })
    socket.once('unexpected-response', (_req, res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => (body += chunk))
      res.on('end', () => {
        socket.terminate()
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body })
      })
    })
    socket.on('error', () => undefined)
  })
}

/** Polls `condition` until it holds, failing after `timeoutMs` (never a fixed sleep). */
export async function until(
  condition: () => boolean,
  what: string,
  timeoutMs = 5000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}
