// What the hub knows about one job: its newest document, a short history of earlier
// documents (so a resuming or slow client gets one patch instead of a snapshot), and who
// watches it. Patches are computed once per distinct base version for the current version
// and shared by every watcher on that base.
import type { JobDocument } from '../protocol/job.js'
import type { JobNotification } from './notification.js'
import { diffDocuments, type Operation } from './patch.js'

export interface Watcher {
  /** Every newer version of the job, in order; never an old or repeated one. */
  onChange(change: JobChange): void
  /** The job was deleted: end the watch. */
  onGone(jobId: string): void
}

export class JobState {
  current: JobDocument | undefined
  tenantId: string | undefined
  ownerId: string | null | undefined
  /** Highest version announced by a notification (may be ahead of `current`). */
  notifiedVersion = 0
  /** Writer-side timestamp of the newest notification (epoch ms), for latency metrics. */
  notifiedTs: number | undefined
  readonly watchers = new Set<Watcher>()
  /** Watches opened whose authorising read is still in flight (Hub.reserve()). */
  reservations = 0
  /**
   * Notifications with small fields that arrived while the version before them was still to
   * be read, oldest first: built on top once that read lands (Hub), at most MAX_PENDING.
   */
  readonly pendingSmall: JobNotification[] = []
  private readonly history = new Map<number, JobDocument>()
  private patches = new Map<number, Operation[]>()

  constructor(
    readonly id: string,
    private readonly historySize: number,
  ) {}

  get version(): number {
    return this.current?.version ?? 0
  }

  /** Moves to a newer document. Returns false (and changes nothing) for an old one. */
  advance(doc: JobDocument): boolean {
    if (doc.version <= this.version) return false
    this.current = doc
    this.patches = new Map()
    if (this.historySize > 0) {
      this.history.set(doc.version, doc)
      if (this.history.size > this.historySize)
        this.history.delete(this.history.keys().next().value!)
    }
    return true
  }

  documentAt(version: number): JobDocument | undefined {
    return this.current?.version === version ? this.current : this.history.get(version)
  }

  /** The patch from `base` to the current document; undefined when `base` is not kept. */
  patchFrom(base: number): Operation[] | undefined {
    const cached = this.patches.get(base)
    if (cached) return cached
    const from = this.documentAt(base)
    if (!from || !this.current || base >= this.current.version) return undefined
    const patch = diffDocuments(from, this.current)
    this.patches.set(base, patch)
    return patch
  }
}

/** One new version of a job, handed to every watcher. Transports memoize their bytes here. */
export class JobChange {
  private memo: Map<string, unknown> | undefined

  constructor(
    readonly state: JobState,
    readonly doc: JobDocument,
    readonly previous: JobDocument | undefined,
  ) {}

  /** Builds a value (a frame, a message) once per key for this change, however many watchers. */
  memoize<T>(key: string, build: () => T): T {
    this.memo ??= new Map()
    if (this.memo.has(key)) return this.memo.get(key) as T
    const value = build()
    this.memo.set(key, value)
    return value
  }
}
