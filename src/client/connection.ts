// Owns one logical connection: streams SSE, and when streaming keeps failing, long-polls.
// What is watched and how events apply belongs to a session (one job, or many multiplexed);
// this file decides when to connect, how long to wait, and which transport to use.
//   * A stream counts as failed when the server answers but no byte of the stream arrives
//     (an HTTP error, a proxy that buffers: nothing within firstByteTimeoutMs). After
//     fallbackAfterFailures consecutive failures it long-polls for retryStreamAfterMs, then
//     streams again; one more failure then goes straight back to polling. An unreachable
//     server or a 429 does not count: polling would not fare better.
//   * A stream that delivered and then dropped is resumed (Last-Event-ID) after a backoff
//     delay; the backoff resets once a connection stayed healthy for resetAfterMs. While it
//     waits, the state is `reconnecting` with the moment of the next attempt (`retryAt`).
//   * restart() reconnects at once (a job was added or removed, or a patch failed).
//   * retryNow() skips a wait: the backoff delay, or the rest of a long-poll phase. In a
//     browser, the `online` event does the same.
import { HEADER, MEDIA_TYPE } from '../protocol/http.js'
import { Backoff, sleep } from './backoff.js'
import {
  buildRequest,
  describeFailure,
  isFatalStatus,
  retryAfterMs,
  WatchError,
  type ConnectionState,
  type ResolvedOptions,
} from './options.js'
import { pollJobs, type PollSession } from './long-poll.js'
import { readEventStream, SseParser, type SseMessage } from './sse-reader.js'

/** What to do after an event: keep going, stop this stream for good, or reconnect at once. */
export type Verdict = 'continue' | 'end' | 'restart'

export interface StreamTarget {
  path: string
  query?: Record<string, string>
  lastEventId?: string
}

export interface StreamSession extends PollSession {
  /** The next stream request; undefined when nothing is left to watch. */
  streamTarget(): StreamTarget | undefined
  /** With nothing left to watch: close for good (one job), or wait for more (a shared client). */
  readonly closesWhenIdle: boolean
  onMessage(message: SseMessage): Verdict
  /** 204 No Content: the client already has the final state. */
  onNoContent(): void
  /** A stream opened (200, text/event-stream): the response, before its first byte is read. */
  onOpen?(response: Response): void
  /** The server refused the whole request (400, 401, 403, 404): no retry helps. */
  onFatal(error: WatchError): void
  /** The connection stopped for good (closed by the user, or nothing left). */
  onClosed(): void
}

type Outcome =
  'end' | 'restart' | 'dropped' | { kind: 'failed'; counts: boolean; minDelayMs: number }

const ABORT_FIRST_BYTE = 'no first byte'

export class Connection {
  state: ConnectionState = 'connecting'
  private readonly backoff: Backoff
  private readonly closer = new AbortController()
  private attempt: AbortController | undefined
  private failures = 0
  private pollUntil = 0
  private isRunning = false
  private isRestartPending = false
  private wake: (() => void) | undefined
  private readonly stateListeners = new Set<(state: ConnectionState) => void>()

  constructor(
    private readonly session: StreamSession,
    private readonly options: ResolvedOptions,
  ) {
    this.backoff = new Backoff(options.backoff)
    if (options.onState) this.stateListeners.add(options.onState)
    options.signal?.addEventListener('abort', () => this.close(), { once: true })
    // A browser that is back online need not wait out the backoff.
    const events = globalThis as Partial<Pick<EventTarget, 'addEventListener'>>
    if (typeof events.addEventListener === 'function' && 'onLine' in (globalThis.navigator ?? {})) {
      const onOnline = () => this.retryNow()
      events.addEventListener('online', onOnline, { signal: this.closer.signal })
    }
  }

  get isClosed(): boolean {
    return this.closer.signal.aborted
  }

  onState(listener: (state: ConnectionState) => void): () => void {
    this.stateListeners.add(listener)
    return () => this.stateListeners.delete(listener)
  }

  /** Starts, or reconnects at once, on the next tick: several changes make one request. */
  restart(): void {
    if (this.options.signal?.aborted) return this.close()
    if (this.isClosed || this.isRestartPending) return
    this.isRestartPending = true
    setTimeout(() => {
      this.isRestartPending = false
      if (this.isClosed) return
      if (!this.isRunning) return void this.run()
      this.attempt?.abort('restart')
      this.wake?.()
    }, 0)
  }

  /**
   * Reconnects at once if the connection is waiting to: during a backoff delay, or while it
   * long-polls between stream attempts. Does nothing while connecting, open or closed.
   */
  retryNow(): void {
    if (this.isClosed) return
    if (this.state === 'polling') {
      this.pollUntil = 0
      this.attempt?.abort('retry now')
    } else if (typeof this.state === 'object') {
      this.wake?.()
    }
  }

  close(): void {
    if (this.isClosed) return
    this.closer.abort('closed')
    this.attempt?.abort('closed')
    this.wake?.()
    this.setState('closed')
    this.session.onClosed()
  }

  private async run(): Promise<void> {
    this.isRunning = true
    try {
      while (!this.isClosed) {
        const target = this.session.streamTarget()
        if (!target) {
          if (this.session.closesWhenIdle) return this.close()
          this.setState('closed')
          this.pollUntil = 0
          await new Promise<void>((resolve) => (this.wake = resolve))
          this.wake = undefined
          continue
        }
        if (Date.now() < this.pollUntil) {
          await this.pollPhase()
          continue
        }
        if (typeof this.state !== 'string' || this.state === 'closed' || this.state === 'polling')
          this.setState('connecting')
        const outcome = await this.streamOnce(target)
        if (this.isClosed) break
        if (outcome === 'end' || outcome === 'restart') continue
        if (outcome !== 'dropped' && outcome.counts) {
          if (++this.failures >= this.options.fallbackAfterFailures) {
            this.pollUntil = Date.now() + this.options.retryStreamAfterMs
            this.failures = this.options.fallbackAfterFailures - 1
            continue
          }
        }
        const minDelay = outcome === 'dropped' ? 0 : outcome.minDelayMs
        const delay = Math.max(this.backoff.nextDelayMs(), minDelay)
        this.setState({ state: 'reconnecting', inMs: delay, retryAt: Date.now() + delay })
        await this.sleepUnlessRestarted(delay)
      }
    } finally {
      this.isRunning = false
    }
  }

  private async streamOnce(target: StreamTarget): Promise<Outcome> {
    const attempt = this.newAttempt()
    let hasResponse = false
    let hasBytes = false
    let timer: ReturnType<typeof setTimeout> | undefined
    const arm = (ms: number, reason: string) => {
      clearTimeout(timer)
      timer = setTimeout(() => attempt.abort(reason), ms)
    }
    arm(this.options.firstByteTimeoutMs, ABORT_FIRST_BYTE)
    let verdict = 'continue' as Verdict
    try {
      const request = await buildRequest(this.options, target.path, target.query, {
        accept: MEDIA_TYPE.eventStream,
        ...(target.lastEventId === undefined ? {} : { [HEADER.lastEventId]: target.lastEventId }),
      })
      const res = await this.options.fetch(request.url, {
        headers: request.headers,
        signal: attempt.signal,
        cache: 'no-store',
      })
      hasResponse = true
      if (res.status === 204) {
        this.session.onNoContent()
        return 'end'
      }
      if (res.status !== 200 || !res.body) return await this.refused(res)
      // A 200 that is not an event stream (a captive portal, a misrouted proxy) is a failure.
      if (!(res.headers.get('content-type') ?? '').startsWith(MEDIA_TYPE.eventStream)) {
        await res.body.cancel().catch(() => undefined)
        return { kind: 'failed', counts: true, minDelayMs: 0 }
      }
      this.session.onOpen?.(res)
      const parser = new SseParser(
        {
          onActivity: () => {
            if (!hasBytes) {
              hasBytes = true
              this.failures = 0
              this.backoff.opened()
              this.setState('open')
            }
            arm(this.options.idleTimeoutMs, 'idle')
          },
          onMessage: (message) => {
            if (verdict !== 'continue') return
            verdict = this.session.onMessage(message)
            if (verdict !== 'continue') attempt.abort(verdict)
          },
        },
        target.lastEventId,
      )
      await readEventStream(res.body, parser, attempt.signal)
    } catch {
      // A broken connection, a timeout or our own abort: what follows tells which.
    } finally {
      clearTimeout(timer)
    }
    if (verdict === 'end') return 'end'
    if (verdict === 'restart' || attempt.signal.reason === 'restart') return 'restart'
    if (hasBytes) return 'dropped'
    // Unreachable (refused, reset before any answer) does not count; a silent answer does.
    const counts = hasResponse || attempt.signal.reason === ABORT_FIRST_BYTE
    return { kind: 'failed', counts, minDelayMs: 0 }
  }

  /** A non-200 answer: fatal (the session is told), or a failure with a minimum delay. */
  private async refused(res: Response): Promise<Outcome> {
    const detail = await describeFailure(res)
    if (isFatalStatus(res.status, this.options)) {
      this.session.onFatal(new WatchError(detail, res.status))
      return 'end'
    }
    return { kind: 'failed', counts: res.status !== 429, minDelayMs: retryAfterMs(res) }
  }

  private async pollPhase(): Promise<void> {
    this.setState('polling')
    const attempt = this.newAttempt()
    const ms = this.pollUntil - Date.now()
    const timer = setTimeout(() => attempt.abort('stream again'), ms)
    try {
      // Nothing to poll (a feed that holds no job yet): wait for the next stream attempt.
      if (this.session.pollTargets().length === 0) await sleep(ms, attempt.signal)
      else await pollJobs(this.session, this.options, this.backoff, attempt.signal)
    } finally {
      clearTimeout(timer)
    }
  }

  private newAttempt(): AbortController {
    const attempt = new AbortController()
    this.attempt = attempt
    if (this.isClosed) attempt.abort('closed')
    return attempt
  }

  private async sleepUnlessRestarted(ms: number): Promise<void> {
    const attempt = this.newAttempt()
    this.wake = () => attempt.abort('restart')
    await sleep(ms, attempt.signal)
    this.wake = undefined
  }

  private setState(state: ConnectionState): void {
    if (this.isClosed && this.state === 'closed') return
    if (typeof state === 'string' && state === this.state) return
    this.state = state
    for (const listener of this.stateListeners) listener(state)
  }
}
