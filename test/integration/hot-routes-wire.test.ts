// What a client sees on the hot routes — status, every header, the body (or a stream's first
// bytes) — for success, 304/204, 400, 401, 403, 404, 429 and 503, recorded in
// __snapshots__/hot-routes-wire.test.ts.snap. The routes' implementation may change (they are
// served by the lean edge, not express); these answers may not. Values that differ per run
// (ids, dates, request ids, seconds left in a window) are replaced by placeholders first.
import { randomUUID } from 'node:crypto'
import pg from 'pg'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import {
  createJob,
  newTenant,
  startTestService,
  tokenFor,
  type TestService,
} from '../helpers/service.js'
import { openSse } from '../helpers/sse.js'
import { request, upgrade } from '../helpers/wire.js'

let database: TestDatabase
/** Default limits; a 300 ms statement timeout turns a locked table into a 503. */
let service: TestService
/** Tiny request limits and stream caps, for the 429s. */
let limited: TestService
let sql: pg.Client

beforeAll(async () => {
  database = await createTestDatabase()
  ;[service, limited] = await Promise.all([
    startTestService(database.url, { DB_STATEMENT_TIMEOUT_MS: '300' }),
    startTestService(database.url, {
      RATE_LIMIT_PER_USER: '3',
      RATE_LIMIT_PER_IP: '2',
      MAX_STREAMS_PER_USER: '1',
    }),
  ])
  sql = new pg.Client({ connectionString: database.url })
  await sql.connect()
})
afterAll(async () => {
  await sql?.end()
  await Promise.all([service?.close(), limited?.close()])
  await database?.drop()
})

const auth = (token: string) => ({ authorization: `Bearer ${token}` })

describe('the hot routes answer exactly as recorded', () => {
  const t = newTenant()
  const other = newTenant()
  let job: { id: string; version: number; watch_token?: unknown }
  let done: { id: string }
  let link: string

  beforeAll(async () => {
    job = await createJob(service, t.alice, { type: 'wire.test' })
    link = job.watch_token as string
    done = await createJob(service, t.alice, { type: 'wire.done' })
    await sql.query(
      `UPDATE job_queue SET status = 'completed', result = '{"ok":true}' WHERE id = $1`,
      [done.id],
    )
  })

  it('GET /v1/jobs/:id', async () => {
    const id = job.id
    expect({
      ok: await request(service, `/v1/jobs/${id}`, auth(t.alice)),
      notModified: await request(service, `/v1/jobs/${id}`, {
        ...auth(t.alice),
        'if-none-match': '"1"',
      }),
      head: await request(service, `/v1/jobs/${id}`, auth(t.alice), { method: 'HEAD' }),
      withLink: await request(service, `/v1/jobs/${id}`, auth(link)),
      malformed: await request(service, '/v1/jobs/nope', auth(t.alice)),
      unknownQuery: await request(service, `/v1/jobs/${id}?foo=1`, auth(t.alice)),
      noToken: await request(service, `/v1/jobs/${id}`),
      queryTokenRefused: await request(service, `/v1/jobs/${id}?token=${t.alice}`),
      badToken: await request(service, `/v1/jobs/${id}`, auth('garbage')),
      linkToOtherJob: await request(service, `/v1/jobs/${done.id}`, auth(link)),
      otherTenant: await request(service, `/v1/jobs/${id}`, auth(other.admin)),
      otherMember: await request(service, `/v1/jobs/${id}`, auth(t.bob)),
    }).toMatchSnapshot()
  })

  it('SSE on one job: /events, ?stream=true, Accept: text/event-stream', async () => {
    const id = job.id
    expect({
      events: await request(service, `/v1/jobs/${id}/events`, auth(t.alice), {
        until: 'event: snapshot',
      }),
      streamTrue: await request(
        service,
        `/v1/jobs/${id}?stream=true&token=${t.alice}`,
        {},
        { until: '\n\n' },
      ),
      accept: await request(
        service,
        `/v1/jobs/${id}`,
        { ...auth(t.alice), accept: 'text/event-stream' },
        {
          until: 'event: snapshot',
        },
      ),
      typed: await request(service, `/v1/jobs/${id}/events?format=events`, auth(t.alice), {
        until: 'event: progress-update',
      }),
      resumeAfterEnd: await request(service, `/v1/jobs/${done.id}/events`, {
        ...auth(t.alice),
        'last-event-id': '2',
      }),
      badFormat: await request(service, `/v1/jobs/${id}/events?format=xml`, auth(t.alice)),
      malformed: await request(service, '/v1/jobs/nope/events', auth(t.alice)),
      noToken: await request(service, `/v1/jobs/${id}/events`),
      expired: await request(
        service,
        `/v1/jobs/${id}/events`,
        auth(tokenFor({}, { expiresIn: -60 })),
      ),
      linkToOtherJob: await request(service, `/v1/jobs/${done.id}/events?token=${link}`),
      otherTenant: await request(service, `/v1/jobs/${id}/events`, auth(other.admin)),
    }).toMatchSnapshot()
  })

  it('GET /v1/jobs/:id/wait', async () => {
    const id = job.id
    expect({
      timedOut: await request(service, `/v1/jobs/${id}/wait?timeout=0`, auth(t.alice)),
      ready: await request(service, `/v1/jobs/${id}/wait?since=0`, auth(t.alice)),
      final: await request(service, `/v1/jobs/${done.id}/wait?timeout=5`, auth(t.alice)),
      badTimeout: await request(service, `/v1/jobs/${id}/wait?timeout=999`, auth(t.alice)),
      unknownQuery: await request(service, `/v1/jobs/${id}/wait?when=now`, auth(t.alice)),
      noToken: await request(service, `/v1/jobs/${id}/wait`),
      linkToOtherJob: await request(service, `/v1/jobs/${done.id}/wait?token=${link}`),
      otherTenant: await request(service, `/v1/jobs/${id}/wait?timeout=0`, auth(other.admin)),
    }).toMatchSnapshot()
  })

  it('GET /v1/events: many jobs, and the tenant feed', async () => {
    const unknown = randomUUID()
    expect({
      jobs: await request(service, `/v1/events?jobs=${job.id},${unknown}`, auth(t.alice), {
        until: 'event: snapshot',
      }),
      feed: await request(service, '/v1/events', auth(t.admin), { until: 'retry:' }),
      allSeen: await request(service, `/v1/events?jobs=${done.id}`, {
        ...auth(t.alice),
        'last-event-id': `j.${done.id.replaceAll('-', '')}:2`,
      }),
      allMalformed: await request(service, '/v1/events?jobs=a,b', auth(t.alice)),
      tooMany: await request(
        service,
        `/v1/events?jobs=${Array.from({ length: 201 }, () => randomUUID()).join(',')}`,
        auth(t.alice),
      ),
      noToken: await request(service, '/v1/events'),
      feedWithLink: await request(service, `/v1/events?token=${link}`),
      linkToOtherJob: await request(service, `/v1/events?jobs=${done.id}&token=${link}`),
      noneVisible: await request(service, `/v1/events?jobs=${job.id}`, auth(other.admin)),
    }).toMatchSnapshot()
  })

  it('WebSocket upgrades: /v1/ws and /v1/jobs/:id', async () => {
    expect({
      ws: await upgrade(service, `/v1/ws?token=${t.alice}`),
      job: await upgrade(service, `/v1/jobs/${job.id}`, auth(t.alice)),
      noToken: await upgrade(service, '/v1/ws'),
      badToken: await upgrade(service, '/v1/ws?token=garbage'),
      malformed: await upgrade(service, `/v1/jobs/nope?token=${t.alice}`),
      nowhere: await upgrade(service, `/v1/nowhere?token=${t.alice}`),
    }).toMatchSnapshot()
  })

  it('429: request limits and stream caps on each route', async () => {
    const u = newTenant()
    const mine = await createJob(limited, u.alice)
    const capped = newTenant()
    const cappedJob = await createJob(limited, capped.alice)
    const holder = await openSse(`${limited.url}/v1/jobs/${cappedJob.id}/events`, {
      headers: auth(capped.alice),
    })
    expect(holder.status).toBe(200)
    const capRefused = await request(limited, `/v1/jobs/${cappedJob.id}/events`, auth(capped.alice))
    holder.close()
    // The create was request 1 of 3.
    expect({
      second: await request(limited, `/v1/jobs/${mine.id}`, auth(u.alice)),
      third: await request(limited, `/v1/jobs/${mine.id}/wait?timeout=0`, auth(u.alice)),
      fourth: await request(limited, `/v1/jobs/${mine.id}/events`, auth(u.alice)),
      overIp: [
        await request(limited, `/v1/jobs/${mine.id}`, auth('bad')),
        await request(limited, `/v1/jobs/${mine.id}`, auth('bad')),
        await request(limited, `/v1/jobs/${mine.id}`, auth('bad')),
      ],
      upgradeOverUser: await upgrade(limited, `/v1/ws?token=${u.alice}`),
      capRefused,
    }).toMatchSnapshot()
  })

  it('503: the database cannot answer in time', async () => {
    const locker = new pg.Client({ connectionString: database.url })
    await locker.connect()
    try {
      await locker.query('BEGIN')
      await locker.query('LOCK TABLE job_queue IN ACCESS EXCLUSIVE MODE')
      expect({
        document: await request(service, `/v1/jobs/${job.id}`, auth(t.alice)),
        events: await request(service, `/v1/jobs/${job.id}/events`, auth(t.alice)),
        wait: await request(service, `/v1/jobs/${job.id}/wait?timeout=0`, auth(t.alice)),
        many: await request(service, `/v1/events?jobs=${job.id}`, auth(t.alice)),
      }).toMatchSnapshot()
    } finally {
      await locker.query('ROLLBACK')
      await locker.end()
    }
  })
})
