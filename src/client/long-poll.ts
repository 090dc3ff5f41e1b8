// The long-poll fallback (`GET /v1/jobs/:id/wait?since=V&timeout=S`), for networks whose
// proxies buffer or cut streams. With few jobs each has its own parked request; with more
// than maxParallelPolls, that many requests rotate over the jobs with 1 s waits, so a page
// never holds more than a handful of HTTP/1.1 connections (browsers allow 6 per origin).
import type { JobDocument } from '../protocol/job.js'
import { QUERY } from '../protocol/http.js'
import { sleep, type Backoff } from './backoff.js'
import {
  buildRequest,
  describeFailure,
  isFatalStatus,
  retryAfterMs,
  WatchError,
  type ResolvedOptions,
} from './options.js'

export interface PollSession {
  /** The jobs still to watch, each with the version the client has (0: none yet). */
  pollTargets(): Array<{ id: string; since: number }>
  /** A document from a long-poll answer (newer, or the same one on time-out). */
  onPolled(doc: JobDocument): void
  /** The server refused one job (404, 403 …): that job is done. */
  onPollFatal(jobId: string, error: WatchError): void
}

/** The rotation wait when there are more jobs than parallel polls. */
const SHORT_WAIT_SECONDS = 1
/** Extra time a parked request may take beyond its `timeout` before we give up on it. */
const GRACE_MS = 15_000

/** Long-polls until the signal aborts or no job is left. Never rejects. */
export async function pollJobs(
  session: PollSession,
  options: ResolvedOptions,
  backoff: Backoff,
  signal: AbortSignal,
): Promise<void> {
  const inFlight = new Set<string>()
  // Round robin: the job polled longest ago goes next (new jobs first: they have no document).
  const lastPolled = new Map<string, number>()
  let tick = 0
  const next = () => {
    let best: { id: string; since: number } | undefined
    for (const target of session.pollTargets()) {
      if (inFlight.has(target.id)) continue
      if (!best || (lastPolled.get(target.id) ?? -1) < (lastPolled.get(best.id) ?? -1))
        best = target
    }
    if (best) lastPolled.set(best.id, tick++)
    return best
  }
  const worker = async () => {
    for (let target = next(); target && !signal.aborted; target = next()) {
      inFlight.add(target.id)
      const many = session.pollTargets().length > options.maxParallelPolls
      const seconds = many ? SHORT_WAIT_SECONDS : options.longPollSeconds
      const delayMs = await pollOnce(session, options, target, seconds, signal).finally(() =>
        inFlight.delete(target.id),
      )
      if (signal.aborted) return
      if (delayMs === 0) backoff.reset()
      else await sleep(Math.max(delayMs, backoff.nextDelayMs()), signal)
    }
  }
  const count = Math.min(options.maxParallelPolls, session.pollTargets().length)
  await Promise.all(Array.from({ length: count }, worker))
}

/** One parked request; resolves with 0 after an answer, or the minimum delay after a failure. */
async function pollOnce(
  session: PollSession,
  options: ResolvedOptions,
  target: { id: string; since: number },
  seconds: number,
  signal: AbortSignal,
): Promise<number> {
  const request = new AbortController()
  const abort = () => request.abort()
  signal.addEventListener('abort', abort, { once: true })
  const timer = setTimeout(abort, seconds * 1000 + GRACE_MS)
  try {
    const { url, headers } = await buildRequest(
      options,
      `/jobs/${encodeURIComponent(target.id)}/wait`,
      { [QUERY.since]: String(target.since), [QUERY.timeout]: String(seconds) },
    )
    const res = await options.fetch(url, { headers, signal: request.signal, cache: 'no-store' })
    if (res.status === 200) {
      session.onPolled((await res.json()) as JobDocument)
      return 0
    }
    if (isFatalStatus(res.status, options)) {
      session.onPollFatal(target.id, new WatchError(await describeFailure(res), res.status))
      return 0
    }
    await res.body?.cancel()
    return Math.max(1, retryAfterMs(res))
  } catch {
    return signal.aborted ? 0 : 1
  } finally {
    clearTimeout(timer)
    signal.removeEventListener('abort', abort)
  }
}
