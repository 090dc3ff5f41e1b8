// Server-Sent Events over fetch: Node 20 has no EventSource, and EventSource cannot send an
// Authorization header nor let the caller choose Last-Event-ID. Parsing follows the HTML
// standard's "event stream interpretation": lines end in CRLF, LF or CR; a blank line
// dispatches; `:` starts a comment; `id` sets the last event id even on events without data.

export interface SseMessage {
  event: string
  data: string
  /** The last event id in force when this event was dispatched. */
  id: string | undefined
}

export interface SseHandlers {
  onMessage(message: SseMessage): void
  /** Any bytes arrived (a comment, a retry line or an event): the stream is alive. */
  onActivity?(): void
  onRetry?(ms: number): void
}

export class SseParser {
  private buffer = ''
  private event = ''
  private data: string[] = []
  private hasData = false
  private lastEventId: string | undefined
  private isAfterCr = false
  private readonly decoder = new TextDecoder()

  constructor(
    private readonly handlers: SseHandlers,
    initialLastEventId?: string,
  ) {
    this.lastEventId = initialLastEventId
  }

  push(chunk: Uint8Array): void {
    if (chunk.length > 0) this.handlers.onActivity?.()
    let text = this.decoder.decode(chunk, { stream: true })
    // A CR that ended the previous chunk was a line end; a LF right after it belongs to it.
    if (this.isAfterCr && text.startsWith('\n')) text = text.slice(1)
    if (text.length > 0) this.isAfterCr = false
    this.buffer += text
    let start = 0
    for (let i = 0; i < this.buffer.length; i++) {
      const c = this.buffer.charCodeAt(i)
      if (c !== 10 && c !== 13) continue
      this.line(this.buffer.slice(start, i))
      if (c === 13) {
        if (i + 1 === this.buffer.length) this.isAfterCr = true
        else if (this.buffer.charCodeAt(i + 1) === 10) i++
      }
      start = i + 1
    }
    this.buffer = this.buffer.slice(start)
  }

  private line(line: string): void {
    if (line === '') return this.dispatch()
    if (line.startsWith(':')) return
    const colon = line.indexOf(':')
    const field = colon < 0 ? line : line.slice(0, colon)
    let value = colon < 0 ? '' : line.slice(colon + 1)
    if (value.startsWith(' ')) value = value.slice(1)
    switch (field) {
      case 'event':
        this.event = value
        break
      case 'data':
        this.data.push(value)
        this.hasData = true
        break
      case 'id':
        if (!value.includes('\0')) this.lastEventId = value
        break
      case 'retry':
        if (/^\d+$/.test(value)) this.handlers.onRetry?.(Number(value))
        break
    }
  }

  private dispatch(): void {
    const event = this.event || 'message'
    const data = this.data.join('\n')
    const hasData = this.hasData
    this.event = ''
    this.data = []
    this.hasData = false
    if (hasData) this.handlers.onMessage({ event, data, id: this.lastEventId })
  }
}

/**
 * Reads a response body to its end, feeding the parser. Resolves when the server closes the
 * stream; rejects when the connection breaks or the signal aborts.
 */
export async function readEventStream(
  body: ReadableStream<Uint8Array>,
  parser: SseParser,
  signal: AbortSignal,
): Promise<void> {
  const reader = body.getReader()
  const cancel = () => void reader.cancel().catch(() => undefined)
  signal.addEventListener('abort', cancel, { once: true })
  try {
    for (;;) {
      if (signal.aborted) throw signal.reason
      const { done, value } = await reader.read()
      if (done) return
      parser.push(value)
    }
  } finally {
    signal.removeEventListener('abort', cancel)
    reader.releaseLock()
  }
}
