// A minimal EventSource-like client over fetch for tests: parses the stream and lets a test
// await the next event of a type, with a timeout (never a sleep).
export interface SseEvent {
  event: string
  data: string
  id: string | undefined
  json<T = unknown>(): T
}

export interface SseClient {
  status: number
  headers: Headers
  events: SseEvent[]
  /** Resolves with the next event (of `type`, when given) not yet taken by next(). */
  next(type?: string, timeoutMs?: number): Promise<SseEvent>
  /** Resolves when the server ended the stream. */
  closed: Promise<void>
  retry: number | undefined
  comments: number
  close(): void
}

export async function openSse(url: string, init: RequestInit = {}): Promise<SseClient> {
  const controller = new AbortController()
  const res = await fetch(url, { ...init, signal: controller.signal })
  const events: SseEvent[] = []
  let cursor = 0
  let waiters: Array<() => void> = []
  const notify = () => {
    const w = waiters
    waiters = []
    for (const f of w) f()
  }
  let ended = false
  const client: SseClient = {
    status: res.status,
    headers: res.headers,
    events,
    retry: undefined,
    comments: 0,
    closed: Promise.resolve(),
    close: () => controller.abort(),
    next: (type, timeoutMs = 10_000) =>
      new Promise<SseEvent>((resolve, reject) => {
        const timer = setTimeout(
          () =>
            reject(
              new Error(
                `no ${type ?? 'event'} within ${timeoutMs} ms; got ${events.map((e) => e.event).join(',')}`,
              ),
            ),
          timeoutMs,
        )
        const check = () => {
          while (cursor < events.length) {
            const e = events[cursor++]!
            if (type === undefined || e.event === type) {
              clearTimeout(timer)
              resolve(e)
              return
            }
          }
          if (ended) {
            clearTimeout(timer)
            reject(
              new Error(
                `stream ended before ${type ?? 'an event'}; got ${events.map((e) => e.event).join(',')}`,
              ),
            )
            return
          }
          waiters.push(check)
        }
        check()
      }),
  }
  if (!res.body || res.status !== 200) {
    ended = true
    return client
  }
  client.closed = (async () => {
    const decoder = new TextDecoder()
    let buffer = ''
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true })
        let index: number
        while ((index = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, index)
          buffer = buffer.slice(index + 2)
          let event = 'message'
          let id: string | undefined
          const data: string[] = []
          let isComment = true
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) continue
            isComment = false
            const colon = line.indexOf(':')
            const field = colon < 0 ? line : line.slice(0, colon)
            const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '')
            if (field === 'event') event = value
            else if (field === 'data') data.push(value)
            else if (field === 'id') id = value
            else if (field === 'retry') client.retry = Number(value)
          }
          if (isComment) client.comments++
          if (data.length > 0) {
            const text = data.join('\n')
            events.push({ event, data: text, id, json: () => JSON.parse(text) })
          }
        }
        notify()
      }
    } catch {
      // aborted by close()
    } finally {
      ended = true
      notify()
    }
  })()
  return client
}
