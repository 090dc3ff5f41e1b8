// Writes Server-Sent Events bytes to one response under a high-water mark. Owns the
// backpressure both SSE streams share: past STREAM_HIGH_WATER_BYTES the stream counts as
// congested and its owner queues nothing; once the bytes are flushed, onDrained() tells the
// owner to send one merged update.
import type { ServerResponse } from 'node:http'

export class SseWriter {
  isCongested = false
  lastWriteAt = Date.now()
  /** Identifies the write whose flush reopens a congested stream. */
  private flushTicket = 0

  constructor(
    private readonly res: ServerResponse,
    private readonly highWaterBytes: number,
    private readonly onDrained: () => void,
  ) {
    res.on('drain', () => this.drained())
  }

  /** Writes `chunks` as one unit (corked when there are several). */
  write(...chunks: Array<Buffer | string>): void {
    this.lastWriteAt = Date.now()
    let size = 0
    for (const chunk of chunks) size += chunk.length
    const last = chunks.pop()
    if (last === undefined) return
    const fits = this.res.writableLength + size <= this.highWaterBytes
    const isCorked = chunks.length > 0
    if (isCorked) this.res.cork()
    for (const chunk of chunks) this.res.write(chunk)
    if (fits) {
      if (!this.res.write(last)) this.isCongested = true // 'drain' reopens the stream
    } else {
      // Past the mark res.write() may still return true (the socket's own mark, 16 KiB, can be
      // higher than ours), and then no 'drain' ever comes: this write's callback, run once the
      // bytes reached the kernel, reopens the stream instead. Only the newest such write
      // counts, so an older callback cannot reopen a stream congested again since.
      this.isCongested = true
      const ticket = ++this.flushTicket
      this.res.write(last, (error) => {
        if (!error && ticket === this.flushTicket) this.drained()
      })
    }
    if (isCorked) this.res.uncork()
  }

  private drained(): void {
    if (!this.isCongested) return
    this.isCongested = false
    this.onDrained()
  }
}
