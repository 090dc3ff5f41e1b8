// Peer for scenario 12: job progress through BullMQ, the usual Node.js choice. Jobs live in a
// BullMQ queue on the machine's Redis; whoever runs them calls job.updateProgress(); this
// server listens with QueueEvents (one Redis stream reader) and fans each `progress` event
// out to the SSE clients of that job: the frame is built once per event and written to each
// socket. It speaks jobwire's wire format (snapshot, then JSON Patch with a test of /version)
// so that the same client code measures both; the job's progress object {progress, t} maps to
// the document's progress and step (`t:<send time>`).
import { createServer, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Job, Queue, QueueEvents } from 'bullmq'
import { serve } from '../lib/child.js'
import { authenticate, frame, openSse, reject } from './peer-kit.js'

interface ProgressDoc {
  id: string
  progress: number
  step: string | null
  version: number
}

const connection = {
  host: process.env.REDIS_HOST ?? '127.0.0.1',
  port: Number(process.env.REDIS_PORT ?? 6379),
}
const queueName = process.env.BULLMQ_QUEUE ?? 'jobwire-bench'
const prefix = process.env.BULLMQ_PREFIX ?? 'jobwire-bench'
const queue = new Queue(queueName, { connection, prefix })
const events = new QueueEvents(queueName, { connection, prefix })
await events.waitUntilReady()

interface JobEntry {
  doc: ProgressDoc
  subs: Set<ServerResponse>
}
const jobs = new Map<string, JobEntry>()
let delivered = 0
let progressEvents = 0

events.on('progress', ({ jobId, data }) => {
  progressEvents++
  const state = jobs.get(jobId)
  if (!state) return
  const p = data as { progress?: number; t?: number }
  const next: ProgressDoc = {
    ...state.doc,
    progress: Number(p.progress ?? state.doc.progress),
    step: p.t === undefined ? state.doc.step : `t:${p.t.toFixed(3)}`,
    version: state.doc.version + 1,
  }
  const ops = [
    { op: 'test', path: '/version', value: state.doc.version },
    { op: 'replace', path: '/progress', value: next.progress },
    { op: 'replace', path: '/step', value: next.step },
    { op: 'replace', path: '/version', value: next.version },
  ]
  state.doc = next
  const bytes = frame('patch', ops, next.version)
  for (const res of state.subs) res.write(bytes)
  delivered += state.subs.size
})

// One Redis read per job, however many clients open it at once.
const loading = new Map<string, Promise<JobEntry | undefined>>()
function load(id: string): Promise<JobEntry | undefined> {
  let promise = loading.get(id)
  if (!promise) {
    promise = Job.fromId(queue, id).then((job) => {
      if (!job) return undefined
      const p = job.progress as { progress?: number } | number
      const progress = typeof p === 'number' ? p : Number(p?.progress ?? 0)
      const entry: JobEntry = { doc: { id, progress, step: null, version: 1 }, subs: new Set() }
      jobs.set(id, entry)
      return entry
    })
    loading.set(id, promise)
    void promise.finally(() => loading.delete(id))
  }
  return promise
}

const PATH = /^\/v1\/jobs\/([\w-]{1,64})\/events$/

const server = createServer((req, res) => {
  void (async () => {
    const id = PATH.exec(req.url ?? '')?.[1]
    if (!id) return reject(res, 404)
    if (!authenticate(req)) return reject(res, 401)
    const state = jobs.get(id) ?? (await load(id))
    if (!state) return reject(res, 404)
    openSse(res)
    res.write(frame('snapshot', state.doc, state.doc.version))
    const subs = state.subs
    subs.add(res)
    res.on('close', () => subs.delete(res))
  })().catch(() => reject(res, 500))
})
server.listen(0, '127.0.0.1', 1024)
await new Promise<void>((r) => server.once('listening', () => r()))

serve(
  { stats: () => ({ delivered, progressEvents, watchedJobs: jobs.size }) },
  { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, pid: process.pid },
  async () => {
    server.closeAllConnections()
    await events.close()
    await queue.close()
  },
)
