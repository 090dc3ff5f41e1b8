// Characterisation of pg-listen, the LISTEN library the design names, to record why
// src/events/listener.ts does not use it. pg-listen (unmaintained) reconnects after a lost
// connection, but by default only for retryTimeout = 3000 ms (attempts every 500 ms): then
// reinitialize() emits 'error' and returns, and nothing ever tries again. Its paranoid
// check was cancelled on the way, the dead client's listeners removed. So an outage of just
// over 3 s (a PostgreSQL restart, a failover) leaves a subscriber that still lists its
// channels and never hears another notification. This test shows exactly that through a
// TCP proxy that cuts only pg-listen's connection.
import pg from 'pg'
import pgListen from 'pg-listen'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import { startTcpProxy, targetOf, type TcpProxy } from '../helpers/tcp-proxy.js'

const createSubscriber = pgListen.default
type Subscriber = ReturnType<typeof createSubscriber>

const CHANNEL = 'pg_listen_characterisation'

/** Resolves with the next event, or rejects after timeoutMs (never waits unbounded). */
function nextEvent<T>(
  subscribe: (listener: (value: T) => void) => () => void,
  timeoutMs: number,
  what: string,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      unsubscribe()
      reject(new Error(`no ${what} within ${timeoutMs} ms`))
    }, timeoutMs)
    const unsubscribe = subscribe((value) => {
      clearTimeout(timer)
      unsubscribe()
      resolve(value)
    })
  })
}

let database: TestDatabase
let proxy: TcpProxy
let subscriber: Subscriber | undefined
const clients: pg.Client[] = []

async function directClient(url = database.url): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url })
  clients.push(client)
  await client.connect()
  return client
}

beforeAll(async () => {
  database = await createTestDatabase()
  proxy = await startTcpProxy(targetOf(database.url))
})

afterAll(async () => {
  await subscriber?.close().catch(() => undefined)
  await Promise.all(clients.map((c) => c.end().catch(() => undefined)))
  await proxy?.close()
  await database?.drop()
})

describe('pg-listen with its default options', () => {
  it('gives up for good after a 3 s outage, so later notifications never reach it', async () => {
    subscriber = createSubscriber({ connectionString: proxy.url(database.url) })
    const errors: Error[] = []
    const reconnectAttempts: number[] = []
    subscriber.events.on('error', (error) => errors.push(error))
    subscriber.events.on('reconnect', (attempt) => reconnectAttempts.push(attempt))
    const received: unknown[] = []
    subscriber.notifications.on(CHANNEL, (payload: unknown) => received.push(payload))
    const onNotification = (listener: (payload: unknown) => void) => {
      subscriber!.notifications.on(CHANNEL, listener)
      return () => void subscriber!.notifications.removeListener(CHANNEL, listener)
    }

    await subscriber.connect()
    await subscriber.listenTo(CHANNEL)
    const notifier = await directClient()

    // Control: before the outage a NOTIFY reaches it.
    const first = nextEvent(onNotification, 5000, 'notification before the outage')
    await notifier.query(`SELECT pg_notify($1, $2)`, [CHANNEL, JSON.stringify({ n: 1 })])
    expect(await first).toEqual({ n: 1 })
    expect(proxy.connections).toBe(1)

    // The outage: pg-listen's connection is cut, and every reconnect attempt is refused.
    const pausedAt = Date.now()
    const gaveUp = nextEvent<Error>(
      (listener) => {
        subscriber!.events.on('error', listener)
        return () => void subscriber!.events.removeListener('error', listener)
      },
      15_000,
      "pg-listen 'error' event",
    )
    proxy.pause()
    const error = await gaveUp
    const outageMs = Date.now() - pausedAt
    expect(error.message).toMatch(
      /Stopping PostgreSQL reconnection attempts after 3000ms timeout has been reached/,
    )
    expect(outageMs).toBeGreaterThanOrEqual(3000)
    expect(outageMs).toBeLessThan(10_000)
    expect(reconnectAttempts.length).toBeGreaterThanOrEqual(2)

    // PostgreSQL is reachable through the proxy again; a plain pg client proves it by
    // LISTENing on the same path and receiving the next NOTIFY.
    proxy.resume()
    const control = await directClient(proxy.url(database.url))
    await control.query(`LISTEN ${CHANNEL}`)
    const controlGot = nextEvent<pg.Notification>(
      (listener) => {
        control.on('notification', listener)
        return () => void control.off('notification', listener)
      },
      5000,
      'notification on the control client',
    )
    const receivedBefore = received.length
    await notifier.query(`SELECT pg_notify($1, $2)`, [CHANNEL, JSON.stringify({ n: 2 })])
    expect((await controlGot).payload).toBe(JSON.stringify({ n: 2 }))

    // The one bounded wait for something that must not happen: there is no event that
    // signals "pg-listen will never deliver this". The control client already has the
    // notification, so a live subscriber would have it too; 1 s is ample margin.
    await expect(nextEvent(onNotification, 1000, 'notification after the outage')).rejects.toThrow(
      /no notification after the outage within 1000 ms/,
    )
    expect(received).toHaveLength(receivedBefore)

    // And it is not quietly retrying either: the only connection through the proxy is the
    // control client's, while pg-listen still believes it is subscribed.
    expect(proxy.connections).toBe(1)
    expect(subscriber.getSubscribedChannels()).toEqual([CHANNEL])
    expect(errors).toEqual([error])
  })
})
