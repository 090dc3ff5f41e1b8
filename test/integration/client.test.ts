// The client library against a real server (docs/contract.md §13): it converges to the row as committed
// through a listener outage and a server restart, stops for good on `end` and on 204, falls
// back to long-poll behind a proxy that buffers streams, resyncs after a patch that does not
// apply, and multiplexes many jobs over one connection, adding and removing jobs without
// losing positions; and the tenant feed catches up after an outage on one connection.
import { createServer as createHttpServer, request as httpRequest } from 'node:http'
import { createServer as createNetServer } from 'node:net'
import pg from 'pg'
import { jest } from '@jest/globals'
import {
  createClient,
  watch,
  watchFeed,
  watchMany,
  type ConnectionState,
} from '../../src/client/index.js'
import type { JobDocument } from '../../src/protocol/job.js'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import { createJob, newTenant, startTestService, type TestService } from '../helpers/service.js'
import { startTcpProxy, targetOf } from '../helpers/tcp-proxy.js'

let database: TestDatabase
let service: TestService
let sql: pg.Client

beforeAll(async () => {
  database = await createTestDatabase()
  service = await startTestService(database.url)
  sql = new pg.Client({ connectionString: database.url })
  await sql.connect()
})
/** Closes what a failed test left open, so jest can exit. */
const onCleanup: Array<() => void> = []
afterEach(() => {
  for (const cleanup of onCleanup.splice(0)) cleanup()
})
/** The client's entry points, closed after each test whatever happened. */
function tracked<T extends { close(): void }>(handle: T): T {
  onCleanup.push(() => handle.close())
  return handle
}
const watchJob = (...args: Parameters<typeof watch>) => tracked(watch(...args))
const watchJobs = (...args: Parameters<typeof watchMany>) => tracked(watchMany(...args))

afterAll(async () => {
  await sql?.end()
  await service?.close()
  await database?.drop()
})

/** Fast reconnects, so that each test takes well under a second per outage. */
const FAST = { backoff: { baseMs: 50, capMs: 400, resetAfterMs: 2000 } }

async function until(check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

async function within<T>(promise: Promise<T>, what: string, timeoutMs = 15_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), timeoutMs)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

async function currentDoc(svc: TestService, id: string, token: string): Promise<JobDocument> {
  return (await (await svc.fetch(`/v1/jobs/${id}`, { token })).json()) as JobDocument
}

const update = (id: string, set: string) =>
  sql.query(`UPDATE job_queue SET ${set} WHERE id = $1`, [id])
const complete = (id: string) =>
  update(id, `status = 'completed', progress = 100, result = '{"ok":true}'`)

interface Recorded {
  url: string
  lastEventId: string | null
  status: number | undefined
  /** The stream text the client received (SSE only). */
  text: string
}

/**
 * A fetch that records every request, and lets a test rewrite or cut SSE frames on their way
 * to the client: `frame` returns the frame to pass, null to drop it, or 'cut' to end the
 * stream there (a proxy that closes the connection).
 */
function recordingFetch(frame?: (text: string, requestIndex: number) => string | null | 'cut') {
  const requests: Recorded[] = []
  const fetchImpl: typeof fetch = async (input, init) => {
    const entry: Recorded = {
      url: String(input),
      lastEventId: new Headers(init?.headers).get('last-event-id'),
      status: undefined,
      text: '',
    }
    const index = requests.push(entry) - 1
    const res = await fetch(input, init)
    entry.status = res.status
    if (!res.body || !(res.headers.get('content-type') ?? '').includes('text/event-stream'))
      return res
    const decoder = new TextDecoder()
    const encoder = new TextEncoder()
    let pending = ''
    const body = res.body.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, controller) {
          pending += decoder.decode(chunk, { stream: true })
          let end: number
          while ((end = pending.indexOf('\n\n')) >= 0) {
            const original = pending.slice(0, end + 2)
            pending = pending.slice(end + 2)
            const out = frame ? frame(original, index) : original
            if (out === 'cut') return controller.terminate()
            if (out === null) continue
            entry.text += out
            controller.enqueue(encoder.encode(out))
          }
        },
      }),
    )
    return new Response(body, { status: res.status, headers: res.headers })
  }
  return { fetch: fetchImpl, requests }
}

const sseRequests = (requests: Recorded[]) => requests.filter((r) => /\/events(\?|$)/.test(r.url))

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createNetServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address()
      srv.close(() => resolve(typeof address === 'object' && address ? address.port : 0))
    })
  })
}

describe('watch()', () => {
  it('converges through a listener outage', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    const watcher = watchJob(job.id, { baseUrl: service.url, token: t.admin, ...FAST })
    await until(() => watcher.current !== undefined, 'the snapshot')
    await update(job.id, `status = 'running', progress = 10`)
    await until(() => watcher.current?.progress === 10, 'progress 10')

    const { rowCount } = await sql.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE application_name = 'jobwire-listener' AND datname = current_database()`,
    )
    expect(rowCount).toBe(1)
    // Committed while the listener is away: no NOTIFY reaches the service.
    await update(job.id, `progress = 60, step = 'during the outage'`)
    await complete(job.id)

    const final = await within(watcher.done, 'the final document')
    expect(final).toEqual(await currentDoc(service, job.id, t.admin))
    expect(watcher.state).toBe('closed')
  })

  it('converges through a server restart on the same port', async () => {
    const port = await freePort()
    let svc = await startTestService(database.url, { PORT: String(port) })
    try {
      const t = newTenant()
      const job = await createJob(svc, t.admin)
      const recorder = recordingFetch()
      const states: ConnectionState[] = []
      const watcher = watchJob(job.id, {
        baseUrl: svc.url,
        token: t.admin,
        fetch: recorder.fetch,
        onState: (s) => states.push(s),
        ...FAST,
      })
      await update(job.id, `status = 'running', progress = 30`)
      await until(() => watcher.current?.progress === 30, 'progress 30')
      const versionBefore = watcher.current!.version

      await svc.close()
      await update(job.id, `progress = 80, step = 'while the server was down'`)
      await complete(job.id)
      svc = await startTestService(database.url, { PORT: String(port) })
      expect(svc.url).toBe(`http://127.0.0.1:${port}`)

      const final = await within(watcher.done, 'the final document')
      expect(final).toEqual(await currentDoc(svc, job.id, t.admin))
      expect(states).toContainEqual(expect.objectContaining({ state: 'reconnecting' }))
      // It resumed from what it had, not from scratch.
      const resumed = sseRequests(recorder.requests).filter((r) => r.status === 200)
      expect(resumed.length).toBeGreaterThanOrEqual(2)
      expect(resumed.at(-1)!.lastEventId).toBe(String(versionBefore))
    } finally {
      await svc.close()
    }
  })

  it('stops for good on end: one request, the final document, state closed', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    const recorder = recordingFetch()
    const watcher = watchJob(job.id, {
      baseUrl: service.url,
      token: t.admin,
      fetch: recorder.fetch,
    })
    const seen: number[] = []
    const iterating = (async () => {
      for await (const doc of watcher) seen.push(doc.version)
    })()
    await until(() => watcher.current !== undefined, 'the snapshot')
    await update(job.id, `status = 'running', progress = 50`)
    await complete(job.id)
    await within(iterating, 'the iterator to end')
    expect(seen.at(-1)).toBe(3)
    expect(watcher.current).toMatchObject({ status: 'completed', version: 3 })
    expect(watcher.state).toBe('closed')
    expect(watcher.error).toBeUndefined()
    expect(recorder.requests).toHaveLength(1)
    expect(recorder.requests[0]!.text).toMatch(/event: end/)
    await until(() => service.registry.size === 0, 'the server to free the stream')
  })

  it('stops for good on 204 when a cut stream is resumed at the final version', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    // A proxy that closes the stream right before `end`: the client has the final version
    // but not the end, reconnects with Last-Event-ID = that version and gets 204.
    const recorder = recordingFetch((frame) => (/^event: end$/m.test(frame) ? 'cut' : frame))
    const watcher = watchJob(job.id, {
      baseUrl: service.url,
      token: t.admin,
      fetch: recorder.fetch,
      ...FAST,
    })
    await until(() => watcher.current !== undefined, 'the snapshot')
    await complete(job.id)
    const final = await within(watcher.done, 'the watch to stop')
    expect(final).toMatchObject({ status: 'completed', version: 2 })
    expect(recorder.requests.map((r) => [r.status, r.lastEventId])).toEqual([
      [200, null],
      [204, '2'],
    ])
    expect(watcher.state).toBe('closed')
  })

  it('reconnects without Last-Event-ID for a snapshot when a patch does not apply', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    // Corrupt the first patch's base version: the client must refuse it and resync.
    const recorder = recordingFetch((frame, index) =>
      index === 0 && /^event: patch$/m.test(frame)
        ? frame.replace('"path":"/version","value":1', '"path":"/version","value":99')
        : frame,
    )
    const watcher = watchJob(job.id, {
      baseUrl: service.url,
      token: t.admin,
      fetch: recorder.fetch,
      ...FAST,
    })
    await until(() => watcher.current !== undefined, 'the snapshot')
    await update(job.id, `status = 'running', progress = 42`)
    await until(() => watcher.current?.progress === 42, 'progress 42 after the resync')
    const streams = sseRequests(recorder.requests)
    expect(streams).toHaveLength(2)
    expect(streams[1]!.lastEventId).toBeNull()
    expect(streams[1]!.text).toMatch(/event: snapshot/)
    await complete(job.id)
    expect(await within(watcher.done, 'the end')).toEqual(
      await currentDoc(service, job.id, t.admin),
    )
  })

  it('ends with a WatchError for a job it cannot see, without retrying', async () => {
    const t = newTenant()
    const other = newTenant()
    const job = await createJob(service, other.admin)
    const recorder = recordingFetch()
    const watcher = watchJob(job.id, {
      baseUrl: service.url,
      token: t.admin,
      fetch: recorder.fetch,
    })
    await expect(within(watcher.done, 'the failure')).rejects.toMatchObject({
      name: 'WatchError',
      status: 404,
    })
    expect(recorder.requests).toHaveLength(1)
    expect(watcher.state).toBe('closed')
  })

  it('watches with a watch token from POST /v1/jobs', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    const watcher = watchJob(job.id, { baseUrl: service.url, watchToken: String(job.watch_token) })
    await until(() => watcher.current !== undefined, 'the snapshot')
    await complete(job.id)
    expect(await within(watcher.done, 'the end')).toMatchObject({ status: 'completed' })
  })
})

describe('long-poll fallback', () => {
  /** An HTTP proxy that buffers text/event-stream answers whole (never forwards a byte). */
  async function startBufferingProxy(target: string) {
    const upstream = new URL(target)
    const seen = { sse: 0, wait: 0, waitsInFlight: 0, maxWaitsInFlight: 0 }
    const server = createHttpServer((req, res) => {
      const out = httpRequest(
        {
          host: upstream.hostname,
          port: upstream.port,
          method: req.method,
          path: req.url,
          headers: req.headers,
        },
        (up) => {
          if ((up.headers['content-type'] ?? '').includes('text/event-stream')) {
            seen.sse++
            const chunks: Buffer[] = []
            up.on('data', (chunk: Buffer) => chunks.push(chunk))
            up.on('end', () => {
              if (res.destroyed) return
              res.writeHead(up.statusCode ?? 502, up.headers)
              res.end(Buffer.concat(chunks))
            })
            return
          }
          if (req.url?.includes('/wait')) {
            seen.wait++
            seen.maxWaitsInFlight = Math.max(seen.maxWaitsInFlight, ++seen.waitsInFlight)
            res.on('close', () => seen.waitsInFlight--)
          }
          res.writeHead(up.statusCode ?? 502, up.headers)
          up.pipe(res)
        },
      )
      out.on('error', () => res.destroy())
      res.on('close', () => out.destroy())
      req.pipe(out)
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const address = server.address() as { port: number }
    return {
      url: `http://127.0.0.1:${address.port}`,
      seen,
      close: () =>
        new Promise<void>((resolve) => {
          server.closeAllConnections()
          server.close(() => resolve())
        }),
    }
  }

  it('long-polls when the stream is buffered, converges, and tries streaming again', async () => {
    const proxy = await startBufferingProxy(service.url)
    try {
      const t = newTenant()
      const job = await createJob(service, t.admin)
      const states: ConnectionState[] = []
      const watcher = watchJob(job.id, {
        baseUrl: proxy.url,
        token: t.admin,
        firstByteTimeoutMs: 400,
        fallbackAfterFailures: 2,
        retryStreamAfterMs: 1500,
        longPollSeconds: 5,
        onState: (s) => states.push(s),
        ...FAST,
      })
      await until(() => watcher.state === 'polling', 'the fallback to long-poll')
      expect(proxy.seen.sse).toBe(2)
      await until(() => watcher.current !== undefined, 'the first document by long-poll')

      await update(job.id, `status = 'running', progress = 25, step = 'polled'`)
      await until(() => watcher.current?.progress === 25, 'progress 25 by long-poll')

      // After retryStreamAfterMs it tries one stream again, and goes back to polling.
      await until(() => proxy.seen.sse === 3, 'another streaming attempt', 5000)
      await until(() => watcher.state === 'polling', 'polling again')
      const polling = states.filter((s) => s === 'polling').length
      expect(polling).toBeGreaterThanOrEqual(2)

      await complete(job.id)
      const final = await within(watcher.done, 'the final document')
      expect(final).toEqual(await currentDoc(service, job.id, t.admin))
      expect(proxy.seen.wait).toBeGreaterThanOrEqual(2)
      expect(watcher.state).toBe('closed')
    } finally {
      await proxy.close()
    }
  })

  it('polls many jobs with at most maxParallelPolls requests in flight', async () => {
    const proxy = await startBufferingProxy(service.url)
    try {
      const t = newTenant()
      const jobs = await Promise.all(Array.from({ length: 6 }, () => createJob(service, t.admin)))
      const ids = jobs.map((j) => j.id)
      const client = watchJobs(ids, {
        baseUrl: proxy.url,
        token: t.admin,
        firstByteTimeoutMs: 300,
        fallbackAfterFailures: 1,
        maxParallelPolls: 3,
        ...FAST,
      })
      const watches = client.watchMany(ids)
      await until(() => client.state === 'polling', 'the fallback to long-poll')
      await until(() => watches.every((w) => w.current !== undefined), 'every document')
      await sql.query(
        `UPDATE job_queue SET status = 'completed', progress = 100 WHERE id = ANY($1)`,
        [ids],
      )
      await within(Promise.all(watches.map((w) => w.done)), 'every job to end')
      for (const w of watches) expect(w.current).toMatchObject({ status: 'completed' })
      expect(proxy.seen.maxWaitsInFlight).toBeLessThanOrEqual(3)
      await until(() => client.state === 'closed', 'the client to close')
    } finally {
      await proxy.close()
    }
  })
})

describe('multiplexed watch', () => {
  it('watches 20 jobs over one connection to their final states', async () => {
    const t = newTenant()
    const jobs = await Promise.all(Array.from({ length: 20 }, () => createJob(service, t.admin)))
    const ids = jobs.map((j) => j.id)
    const recorder = recordingFetch()
    const client = watchJobs(ids, { baseUrl: service.url, token: t.admin, fetch: recorder.fetch })
    const watches = client.watchMany(ids)
    await until(() => watches.every((w) => w.current !== undefined), 'every snapshot')
    expect(service.registry.size).toBe(1)
    expect(service.registry.countByKind('sse')).toBe(1)

    const changes: string[] = []
    client.onChange((doc) => changes.push(`${doc.id}@${doc.version}`))
    await sql.query(`UPDATE job_queue SET status = 'running', progress = 50 WHERE id = ANY($1)`, [
      ids,
    ])
    await until(() => watches.every((w) => w.current?.progress === 50), 'progress 50 everywhere')
    await sql.query(
      `UPDATE job_queue SET status = 'completed', progress = 100, result = '{"n":1}' WHERE id = ANY($1)`,
      [ids],
    )
    await within(Promise.all(watches.map((w) => w.done)), 'every job to end')
    for (const w of watches) expect(w.current).toEqual(await currentDoc(service, w.jobId, t.admin))
    await until(() => client.state === 'closed', 'the client to close when every job ended')
    expect(sseRequests(recorder.requests)).toHaveLength(1)
    expect(changes.filter((c) => c.endsWith('@3'))).toHaveLength(20)
    await until(() => service.registry.size === 0, 'the server to free the stream')
  })

  it('adds and removes jobs without losing positions', async () => {
    const t = newTenant()
    const [a, b, c] = await Promise.all([1, 2, 3].map(() => createJob(service, t.admin)))
    const recorder = recordingFetch()
    const client = tracked(
      createClient({ baseUrl: service.url, token: t.admin, fetch: recorder.fetch }),
    )
    try {
      const [wa, wb] = client.watchMany([a!.id, b!.id])
      await until(() => !!wa!.current && !!wb!.current, 'two snapshots')
      await update(a!.id, `status = 'running', progress = 20`)
      await update(b!.id, `status = 'running', progress = 30`)
      await until(() => wa!.current?.version === 2 && wb!.current?.version === 2, 'version 2')

      const wc = client.watch(c!.id)
      await until(() => !!wc.current, "the added job's snapshot")
      const streams = sseRequests(recorder.requests)
      expect(streams).toHaveLength(2)
      const hex = (id: string) => id.replaceAll('-', '')
      expect(streams[1]!.url).toContain(`jobs=${a!.id},${b!.id},${c!.id}`)
      expect(streams[1]!.lastEventId).toBe(`j.${hex(a!.id)}:2,${hex(b!.id)}:2`)
      // Positions kept: only the new job gets a snapshot.
      expect(streams[1]!.text.match(/event: snapshot/g)).toHaveLength(1)
      expect(streams[1]!.text).toContain(`"job":"${c!.id}"`)

      client.unwatch(b!.id)
      expect(wb!.isDone).toBe(true)
      await update(a!.id, `progress = 70`)
      await until(() => wa!.current?.progress === 70, 'progress 70 after the removal')
      const third = sseRequests(recorder.requests)[2]!
      expect(third.url).toContain(`jobs=${a!.id},${c!.id}`)
      expect(third.lastEventId).toBe(`j.${hex(a!.id)}:2,${hex(c!.id)}:1`)
      expect(third.text).not.toMatch(/event: snapshot/)

      await complete(a!.id)
      await complete(c!.id)
      await within(Promise.all([wa!.done, wc.done]), 'both jobs to end')
      expect(client.jobIds).toEqual([])
      // A shared client stays usable: idle, no connection, until a job is added.
      await until(() => client.state === 'closed', 'the connection to close when idle')
      await until(() => service.registry.size === 0, 'the stream to close when idle')
      expect(wb!.current?.version).toBe(2)
    } finally {
      client.close()
    }
  })
})

describe('watchFeed()', () => {
  it('watches every job of the tenant on one connection, and catches up after an outage', async () => {
    const tenant = newTenant()
    const proxy = await startTcpProxy(targetOf(service.url))
    onCleanup.push(() => void proxy.close())
    const states: ConnectionState[] = []
    const feed = tracked(
      watchFeed({
        baseUrl: `http://127.0.0.1:${proxy.port}`,
        token: tenant.admin,
        ...FAST,
        onState: (s) => states.push(s),
      }),
    )
    const seen = new Map<string, JobDocument>()
    feed.onChange((doc) => seen.set(doc.id, doc))
    const resets = jest.fn()
    feed.onReset(resets)
    await until(() => feed.state === 'open', 'the feed to open')

    // Jobs created after the feed opened arrive without a new connection.
    const a = await createJob(service, tenant.admin, { type: 'feed' })
    await until(() => seen.has(a.id), 'the first job on the feed')
    await update(a.id, `progress = 30`)
    await until(() => seen.get(a.id)?.progress === 30, 'its change on the feed')
    expect(proxy.accepted).toBe(1)

    // An outage: a job created and another changed meanwhile both arrive on the new connection,
    // which resumes from the last event.
    proxy.pause()
    await until(() => states.some((s) => typeof s === 'object'), 'the feed to lose its stream')
    const b = await createJob(service, tenant.admin, { type: 'feed' })
    await update(a.id, `progress = 60`)
    proxy.resume()
    await until(() => seen.has(b.id) && seen.get(a.id)?.progress === 60, 'the catch-up')
    expect(resets).not.toHaveBeenCalled()

    await complete(a.id)
    await until(() => seen.get(a.id)?.status === 'completed', 'the end of the first job')
    expect(feed.get(a.id)).toBeUndefined()
    expect(feed.get(b.id)).toMatchObject({ status: 'queued' })
  })

  it('catches up after an outage that came before its first event', async () => {
    const tenant = newTenant()
    const proxy = await startTcpProxy(targetOf(service.url))
    onCleanup.push(() => void proxy.close())
    const states: ConnectionState[] = []
    const feed = tracked(
      watchFeed({
        baseUrl: `http://127.0.0.1:${proxy.port}`,
        token: tenant.admin,
        ...FAST,
        onState: (s) => states.push(s),
      }),
    )
    const seen = new Set<string>()
    feed.onChange((doc) => seen.add(doc.id))
    const resets = jest.fn()
    feed.onReset(resets)
    await until(() => feed.state === 'open', 'the feed to open')
    proxy.pause()
    await until(() => states.some((s) => typeof s === 'object'), 'the feed to lose its stream')
    // Nothing has been sent on the feed yet: it resumes from when its stream opened.
    const job = await createJob(service, tenant.admin, { type: 'feed' })
    proxy.resume()
    await until(() => seen.has(job.id), 'the job created during the outage')
    expect(resets).not.toHaveBeenCalled()
  })

  it('is refused to a watch token, for good', async () => {
    const tenant = newTenant()
    const job = await createJob(service, tenant.admin, { type: 'feed' })
    const feed = tracked(
      watchFeed({ baseUrl: service.url, watchToken: job.watch_token as string, ...FAST }),
    )
    await until(() => feed.state === 'closed', 'the feed to stop')
    expect(feed.error).toMatchObject({ status: 403 })
  })
})
