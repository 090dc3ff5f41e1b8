// Raw HTTP for the wire tests (hot-routes-wire, compat-wire): one request over a fresh
// connection, every header as sent, values that differ per run replaced by placeholders.
import http from 'node:http'
import type { TestService } from './service.js'

export interface Wire {
  status: number
  headers: Record<string, string>
  body: string
}

/** Headers whose value differs per run: their presence is recorded, not their value. */
const VARYING = new Set(['date', 'x-request-id', 'ratelimit-reset', 'retry-after', 'keep-alive'])
const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g
const DATE = /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/g

/** A job id without its dashes, as multiplexed resume ids spell it. */
const BARE_UUID =
  /(?<![0-9a-f])([0-9a-f]{8})([0-9a-f]{4})([0-9a-f]{4})([0-9a-f]{4})([0-9a-f]{12})(?![0-9a-f])/g

export function normalise(text: string, ids: Map<string, string>): string {
  const placeholder = (id: string) => {
    if (!ids.has(id)) ids.set(id, `<uuid-${ids.size + 1}>`)
    return ids.get(id)!
  }
  return text
    .replace(UUID, placeholder)
    .replace(BARE_UUID, (...parts: string[]) => `${placeholder(parts.slice(1, 6).join('-'))}:bare`)
    .replace(DATE, '<date>')
    .replace(/"connectionId":"<uuid-\d+>"/, '"connectionId":"<uuid>"')
}

/**
 * One request over a fresh connection, raw: every header as sent. A stream is read until
 * `until` appears in its bytes (or it ends), then the connection is destroyed.
 */
export function request(
  svc: TestService,
  path: string,
  headers: Record<string, string> = {},
  options: { method?: string; until?: string } = {},
): Promise<Wire> {
  const url = new URL(svc.url + path)
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: url.hostname,
        port: url.port,
        path,
        method: options.method ?? 'GET',
        headers,
        agent: false,
      },
      (res) => {
        let body = ''
        const done = () => {
          const ids = new Map<string, string>()
          const recorded: Record<string, string> = {}
          for (const [name, value] of Object.entries(res.headers).sort(([a], [b]) =>
            a.localeCompare(b),
          )) {
            const text = Array.isArray(value) ? value.join(', ') : String(value)
            recorded[name] = VARYING.has(name) ? '<varies>' : normalise(text, ids)
          }
          resolve({ status: res.statusCode ?? 0, headers: recorded, body: normalise(body, ids) })
          res.destroy()
        }
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => {
          body += chunk
          if (options.until !== undefined && body.includes(options.until)) done()
        })
        res.on('end', done)
        res.on('error', () => undefined)
      },
    )
    req.on('error', reject)
    req.end()
  })
}

/** A refused (or accepted) WebSocket handshake, raw. */
export function upgrade(
  svc: TestService,
  path: string,
  headers: Record<string, string> = {},
): Promise<Wire> {
  const url = new URL(svc.url + path)
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: url.hostname,
      port: url.port,
      path,
      agent: false,
      headers: {
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-version': '13',
        'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
        ...headers,
      },
    })
    const record = (status: number, raw: http.IncomingHttpHeaders, body: string) => {
      const ids = new Map<string, string>()
      const recorded: Record<string, string> = {}
      for (const [name, value] of Object.entries(raw).sort(([a], [b]) => a.localeCompare(b)))
        recorded[name] = VARYING.has(name) ? '<varies>' : normalise(String(value), ids)
      resolve({ status, headers: recorded, body: normalise(body, ids) })
    }
    req.on('upgrade', (res, socket) => {
      socket.destroy()
      record(res.statusCode ?? 0, res.headers, '')
    })
    req.on('response', (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => (body += c))
      res.on('end', () => record(res.statusCode ?? 0, res.headers, body))
    })
    req.on('error', reject)
    req.end()
  })
}
