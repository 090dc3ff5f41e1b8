// The stream caps of a cluster (WEB_CONCURRENCY > 1): every worker asks the primary, which
// counts the slots of all of them (src/http/stream-slots.ts SlotCounts), so a user's cap
// holds across the processes. A lease belongs to its worker: when a worker dies, the primary
// frees every slot it held. Messages over the cluster's IPC channel:
//   worker → primary  {from: 'jobwire-slots', op: 'take', id, buckets: [{key, max}]}
//   primary → worker  {from: 'jobwire-slots', id, full: <index of the full bucket, or -1>, open}
//   worker → primary  {from: 'jobwire-slots', op: 'free', id}
import type { Worker } from 'node:cluster'
import type { Principal } from '../db/tenant-transaction.js'
import { ServiceUnavailableError } from '../errors.js'
import {
  capRefusal,
  SlotCounts,
  slotLease,
  streamBucketsOf,
  type SlotLease,
  type StreamCaps,
  type StreamSlots,
} from '../http/stream-slots.js'

const FROM = 'jobwire-slots'
/** How long a worker waits for the primary's answer before refusing the stream (ms). */
const ANSWER_TIMEOUT_MS = 2000

interface TakeMessage {
  from: typeof FROM
  op: 'take'
  id: number
  buckets: Array<{ key: string; max: number }>
}
interface FreeMessage {
  from: typeof FROM
  op: 'free'
  id: number
}
interface Answer {
  from: typeof FROM
  id: number
  full: number
  open: number
}

const isOurs = (message: unknown): message is { from: typeof FROM } =>
  typeof message === 'object' && message !== null && (message as { from?: unknown }).from === FROM

/** The worker's side: a StreamSlots whose counts live in the primary. */
export class ClusterStreamSlots implements StreamSlots {
  private nextId = 1
  private readonly waiting = new Map<number, (answer: Answer) => void>()

  constructor(private readonly caps: StreamCaps) {
    process.on('message', (message: unknown) => {
      if (!isOurs(message)) return
      const answer = message as Answer
      this.waiting.get(answer.id)?.(answer)
      this.waiting.delete(answer.id)
    })
  }

  async acquire(principal: Principal): Promise<SlotLease> {
    const buckets = streamBucketsOf(principal, this.caps)
    if (buckets.length === 0) return slotLease(() => undefined)
    const id = this.nextId++
    const answer = await new Promise<Answer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id)
        reject(new ServiceUnavailableError('The stream cap could not be checked; retry.', 1))
      }, ANSWER_TIMEOUT_MS)
      this.waiting.set(id, (a) => {
        clearTimeout(timer)
        resolve(a)
      })
      const message: TakeMessage = {
        from: FROM,
        op: 'take',
        id,
        buckets: buckets.map(({ key, max }) => ({ key, max })),
      }
      process.send!(message)
    })
    if (answer.full >= 0) throw capRefusal(buckets[answer.full]!, answer.open)
    return slotLease(() => {
      const message: FreeMessage = { from: FROM, op: 'free', id }
      if (process.connected) process.send!(message)
    })
  }
}

/** The primary's side: the counts of every worker, and each worker's leases. */
export class ClusterSlotTable {
  readonly counts = new SlotCounts()

  /** Answers `worker`'s messages; frees all of its slots when it exits. */
  serve(worker: Worker): void {
    /** Lease id → the bucket keys it holds. */
    const held = new Map<number, string[]>()
    worker.on('message', (message: unknown) => {
      if (!isOurs(message)) return
      const m = message as TakeMessage | FreeMessage
      if (m.op === 'free') {
        const keys = held.get(m.id)
        held.delete(m.id)
        if (keys) this.counts.free(keys)
        return
      }
      const full = this.counts.tryTake(m.buckets)
      if (full < 0)
        held.set(
          m.id,
          m.buckets.map((b) => b.key),
        )
      const answer: Answer = {
        from: FROM,
        id: m.id,
        full,
        open: full < 0 ? 0 : this.counts.count(m.buckets[full]!.key),
      }
      if (worker.isConnected()) worker.send(answer)
    })
    worker.once('exit', () => {
      for (const keys of held.values()) this.counts.free(keys)
      held.clear()
    })
  }
}
