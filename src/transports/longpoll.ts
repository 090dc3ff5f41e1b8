// A parked long-poll request (docs/contract.md §8): answers as soon as its condition holds — a version
// newer than `since`, or a terminal status — or with the current document on time-out.
// Parking costs no query: the waiter is woken by the same hub changes as the streams.
import { isTerminalStatus, type JobDocument } from '../protocol/job.js'
import type { JobChange, PendingWatch, Watcher, WatchHandle } from '../events/hub.js'
import type { HeldSlots, RegisteredStream, StreamRegistry } from './stream-registry.js'

export type WaitOutcome =
  | { kind: 'ready'; doc: JobDocument }
  | { kind: 'timed-out'; doc: JobDocument }
  /** `since` is the final version of a finished job: nothing newer will come. */
  | { kind: 'final'; doc: JobDocument }
  | { kind: 'shutdown'; doc: JobDocument }
  | { kind: 'gone' }

/** `since` given: any newer version; otherwise a terminal status. */
export function isWaitSatisfied(doc: JobDocument, since: number | undefined): boolean {
  return since === undefined ? isTerminalStatus(doc.status) : doc.version > since
}

export class LongPollWaiter implements Watcher, RegisteredStream {
  readonly kind = 'longpoll' as const
  readonly expiresAt = 0
  lastWriteAt = Date.now()
  private handle: WatchHandle | undefined
  private unregister: (() => void) | undefined
  private timer: NodeJS.Timeout | undefined
  private isDone = false

  constructor(
    readonly tenantId: string,
    private readonly since: number | undefined,
    private readonly respond: (outcome: WaitOutcome) => void,
    /** The waiter's cap slots, held while it is parked. */
    private readonly slots?: HeldSlots,
  ) {}

  /**
   * Answers at once when satisfied (or timeout 0); otherwise attaches to the authorised watch
   * and parks for `timeoutMs`.
   */
  start(watch: PendingWatch, registry: StreamRegistry, timeoutMs: number): void {
    const doc = watch.state.current!
    const immediate: WaitOutcome | undefined = isWaitSatisfied(doc, this.since)
      ? { kind: 'ready', doc }
      : // A finished job will never have a newer version: waiting would only burn the timeout.
        isTerminalStatus(doc.status)
        ? { kind: 'final', doc }
        : timeoutMs <= 0
          ? { kind: 'timed-out', doc }
          : undefined
    if (immediate) {
      watch.cancel()
      return this.finish(immediate)
    }
    this.handle = watch.attach(this)
    this.unregister = registry.add(this, this.slots)
    this.timer = setTimeout(
      () => this.finish({ kind: 'timed-out', doc: this.handle!.state.current! }),
      timeoutMs,
    )
  }

  onChange(change: JobChange): void {
    if (!this.isDone && isWaitSatisfied(change.doc, this.since))
      this.finish({ kind: 'ready', doc: change.doc })
  }

  onGone(): void {
    this.finish({ kind: 'gone' })
  }

  close(): void {
    const doc = this.handle?.state.current
    if (doc) this.finish({ kind: 'shutdown', doc })
  }

  /** The client went away: free everything, answer nothing. */
  abort(): void {
    if (this.isDone) return
    this.isDone = true
    this.dispose()
  }

  private finish(outcome: WaitOutcome): void {
    if (this.isDone) return
    this.isDone = true
    this.dispose()
    this.respond(outcome)
  }

  private dispose(): void {
    clearTimeout(this.timer)
    this.handle?.close()
    this.unregister?.()
  }
}
