// Load generator for the BullMQ peer: creates the jobs, then reports progress on them with
// job.updateProgress({progress, t}) at a fixed rate, t being the send time on the shared clock
// (the same origin as jobwire's writer: just before the write goes out). Removes its queue's
// keys from Redis at the end.
import { Queue, type Job } from 'bullmq'
import { nowMs, serve, sleep } from '../lib/child.js'

const connection = {
  host: process.env.REDIS_HOST ?? '127.0.0.1',
  port: Number(process.env.REDIS_PORT ?? 6379),
}
const queue = new Queue(process.env.BULLMQ_QUEUE ?? 'jobwire-bench', {
  connection,
  prefix: process.env.BULLMQ_PREFIX ?? 'jobwire-bench',
})
let jobs: Job[] = []

serve(
  {
    setup: async (args: { count: number }) => {
      jobs = await Promise.all(
        Array.from({ length: args.count }, (_, i) => queue.add('bench', { i })),
      )
      return jobs.map((j) => j.id!)
    },
    run: async (args: { ratePerSec: number; durationMs: number }) => {
      const total = Math.floor((args.ratePerSec * args.durationMs) / 1000)
      let sent = 0
      let done = 0
      let errors = 0
      const started = nowMs()
      const inflight: Array<Promise<void>> = []
      await new Promise<void>((resolve) => {
        const timer = setInterval(() => {
          const due = Math.min(total, Math.floor(((nowMs() - started) * args.ratePerSec) / 1000))
          while (sent < due) {
            const seq = sent++
            const job = jobs[seq % jobs.length]!
            inflight.push(
              job.updateProgress({ progress: seq % 100, t: nowMs() }).then(
                () => void done++,
                () => void errors++,
              ),
            )
          }
          if (sent >= total) {
            clearInterval(timer)
            resolve()
          }
        }, 1)
      })
      await Promise.race([Promise.all(inflight), sleep(30_000)])
      return { total, sent, done, errors, ms: nowMs() - started }
    },
  },
  {},
  async () => {
    await queue.obliterate({ force: true }).catch(() => undefined)
    await queue.close()
  },
)
