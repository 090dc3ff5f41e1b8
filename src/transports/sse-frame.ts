// Server-Sent Events framing. A frame is built once as a Buffer and written to every socket
// that needs it. JSON.stringify never emits a raw newline, so one `data:` line suffices.

export function sseFrame(event: string, data: unknown, id?: string | number): Buffer {
  const idLine = id === undefined ? '' : `id: ${id}\n`
  return Buffer.from(`${idLine}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`)
}

export const SSE_HEARTBEAT = Buffer.from(': keep-alive\n\n')

export function sseRetry(ms: number): Buffer {
  return Buffer.from(`retry: ${ms}\n\n`)
}

/** The stream's own headers, as a flat name, value, … list for writeHead(). */
export const SSE_HEADERS: readonly string[] = Object.freeze([
  'content-type',
  'text/event-stream; charset=utf-8',
  'cache-control',
  'no-cache, no-transform',
  'x-accel-buffering',
  'no',
  'connection',
  'keep-alive',
])
