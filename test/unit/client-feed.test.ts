// watchFeed(): the tenant feed over one connection, with a fake fetch that serves event
// streams and fake timers. It applies snapshots and patches per job, forgets jobs that
// ended, resumes from the server's last `f.` id (or, before the first event, from the
// server's Date header), says when it may have missed changes, and stops on a refusal.
import { jest } from '@jest/globals'
import { watchFeed, type JobFeed } from '../../src/client/index.js'
import type { JobDocument } from '../../src/protocol/job.js'
import { jobDocument } from '../helpers/job-document.js'

const A = '00000000-0000-4000-8000-00000000000a'
const B = '00000000-0000-4000-8000-00000000000b'
const SERVER_DATE = 'Wed, 01 Jan 2025 00:00:00 GMT'

beforeEach(() => {
  jest.useFakeTimers()
  jest.spyOn(Math, 'random').mockReturnValue(0)
})
afterEach(() => {
  jest.useRealTimers()
  jest.restoreAllMocks()
})

interface Served {
  /** The stream text, or an HTTP status to answer with instead. */
  body: string | number
  /** Close the stream after the text (the connection drops); default: stay open. */
  drop?: boolean
  date?: string | null
}

/** A fetch that answers each request with the next of `answers` (the last one repeats). */
function feedServer(answers: Served[]) {
  const requests: Array<{ url: string; lastEventId: string | null }> = []
  const fetchImpl = jest.fn<typeof fetch>((input, init) => {
    const headers = new Headers(init?.headers)
    requests.push({ url: String(input), lastEventId: headers.get('last-event-id') })
    const answer = answers[Math.min(requests.length, answers.length) - 1]!
    if (typeof answer.body === 'number')
      return Promise.resolve(
        Response.json(
          { title: 'refused', detail: `status ${answer.body}` },
          { status: answer.body },
        ),
      )
    const text = answer.body
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode(text))
        if (answer.drop) controller.close()
        else init?.signal?.addEventListener('abort', () => controller.error(new Error('aborted')))
      },
    })
    const date = answer.date === undefined ? SERVER_DATE : answer.date
    return Promise.resolve(
      new Response(body, {
        status: 200,
        headers: { 'content-type': 'text/event-stream', ...(date ? { date } : {}) },
      }),
    )
  })
  return { fetchImpl, requests }
}

const doc = (id: string, version: number, patch: Partial<JobDocument> = {}) =>
  jobDocument(id, version, { status: 'running', ...patch })

function frame(id: string | undefined, data: Record<string, unknown>): string {
  return `${id ? `id: ${id}\n` : ''}event: ${String(data.type)}\ndata: ${JSON.stringify(data)}\n\n`
}
const snapshot = (id: string, d: JobDocument) =>
  frame(id, { type: 'snapshot', job: d.id, version: d.version, doc: d })
const patch = (id: string, job: string, base: number, ops: unknown[]) =>
  frame(id, {
    type: 'patch',
    job,
    version: base + 1,
    patch: [{ op: 'test', path: '/version', value: base }, ...ops, bump(base + 1)],
  })
const bump = (version: number) => ({ op: 'replace', path: '/version', value: version })

function open(fetchImpl: typeof fetch): JobFeed {
  return watchFeed({
    baseUrl: 'http://jobwire.test',
    token: 't',
    fetch: fetchImpl,
    backoff: { baseMs: 100, capMs: 100 },
  })
}

it('opens one stream on /v1/events and applies snapshots and patches per job', async () => {
  const { fetchImpl, requests } = feedServer([
    {
      body:
        'retry: 2000\n\n' +
        snapshot('f.1', doc(A, 3)) +
        snapshot('f.2', doc(B, 7)) +
        patch('f.3', A, 3, [{ op: 'replace', path: '/progress', value: 40 }]),
    },
  ])
  const feed = open(fetchImpl)
  const seen: Array<[string, number]> = []
  feed.onChange((d) => seen.push([d.id, d.version]))
  await jest.advanceTimersByTimeAsync(1)
  expect(requests).toEqual([{ url: 'http://jobwire.test/v1/events', lastEventId: null }])
  expect(feed.state).toBe('open')
  expect(seen).toEqual([
    [A, 3],
    [B, 7],
    [A, 4],
  ])
  expect(feed.get(A)).toMatchObject({ version: 4, progress: 40 })
  // A late listener gets the documents the feed holds at once.
  const late: string[] = []
  feed.onChange((d) => late.push(d.id))
  expect(late.sort()).toEqual([A, B])
  feed.close()
  expect(feed.state).toBe('closed')
})

it('forgets a job that ended, and reports a deleted one', async () => {
  const done = doc(A, 5, { status: 'completed', progress: 100 })
  const { fetchImpl } = feedServer([
    {
      body:
        snapshot('f.1', done) +
        frame('f.1', { type: 'end', job: A, version: 5, status: 'completed' }) +
        snapshot('f.2', doc(B, 2)) +
        frame('f.3', { type: 'end', job: B, version: 2, status: 'deleted' }),
    },
  ])
  const feed = open(fetchImpl)
  const changed: string[] = []
  const deleted: string[] = []
  feed.onChange((d) => changed.push(`${d.id}@${d.status}`))
  feed.onDeleted((id) => deleted.push(id))
  await jest.advanceTimersByTimeAsync(1)
  expect(changed).toEqual([`${A}@completed`, `${B}@running`])
  expect(feed.get(A)).toBeUndefined()
  expect(feed.get(B)).toBeUndefined()
  expect(deleted).toEqual([B])
  feed.close()
})

it('resumes from the last id the server sent', async () => {
  const { fetchImpl, requests } = feedServer([
    { body: snapshot('f.abc', doc(A, 1)) + snapshot('f.abd', doc(A, 2)), drop: true },
    { body: patch('f.abe', A, 2, []) },
  ])
  const feed = open(fetchImpl)
  const resets = jest.fn()
  feed.onReset(resets)
  await jest.advanceTimersByTimeAsync(200)
  expect(requests.map((r) => r.lastEventId)).toEqual([null, 'f.abd'])
  // The new connection continued from the document the feed held.
  expect(feed.get(A)).toMatchObject({ version: 3 })
  expect(resets).not.toHaveBeenCalled()
  feed.close()
})

it("before its first event, resumes from the server's clock when the stream opened", async () => {
  const { fetchImpl, requests } = feedServer([
    { body: 'retry: 2000\n\n', drop: true },
    { body: ': keep-alive\n\n' },
  ])
  const feed = open(fetchImpl)
  const resets = jest.fn()
  feed.onReset(resets)
  await jest.advanceTimersByTimeAsync(200)
  const expected = `f.${Date.parse(SERVER_DATE).toString(36)}`
  expect(requests.map((r) => r.lastEventId)).toEqual([null, expected])
  expect(resets).not.toHaveBeenCalled()
  feed.close()
})

it('reports a reset when it cannot resume, and when the server says so', async () => {
  const { fetchImpl, requests } = feedServer([
    // No event and no Date header: nothing to resume from.
    { body: 'retry: 2000\n\n', drop: true, date: null },
    { body: frame(undefined, { type: 'reset', detail: 'list again' }), date: null },
  ])
  const feed = open(fetchImpl)
  const resets = jest.fn()
  feed.onReset(resets)
  await jest.advanceTimersByTimeAsync(200)
  expect(requests.map((r) => r.lastEventId)).toEqual([null, null])
  // Once for the blind reconnect, once for the server's `reset` event.
  expect(resets).toHaveBeenCalledTimes(2)
  feed.close()
})

it('reconnects, resumed, after a patch that does not apply', async () => {
  const { fetchImpl, requests } = feedServer([
    { body: snapshot('f.1', doc(A, 1)) + patch('f.2', A, 5, []) },
    { body: snapshot('f.3', doc(A, 6)) },
  ])
  const feed = open(fetchImpl)
  await jest.advanceTimersByTimeAsync(10)
  expect(requests.map((r) => r.lastEventId)).toEqual([null, 'f.1'])
  expect(feed.get(A)).toMatchObject({ version: 6 })
  feed.close()
})

it('stops for good when the server refuses the feed (a watch token gets 403)', async () => {
  const { fetchImpl, requests } = feedServer([{ body: 403 }])
  const feed = open(fetchImpl)
  const errors: unknown[] = []
  feed.onError((error) => errors.push(error))
  const iteration = (async () => {
    for await (const _ of feed) void _
  })().then(
    () => 'ended without an error',
    (error: unknown) => error,
  )
  await jest.advanceTimersByTimeAsync(1000)
  expect(requests).toHaveLength(1)
  expect(feed.state).toBe('closed')
  expect(feed.error).toMatchObject({ name: 'WatchError', status: 403, message: 'status 403' })
  expect(errors).toEqual([feed.error])
  expect(await iteration).toBe(feed.error)
})
