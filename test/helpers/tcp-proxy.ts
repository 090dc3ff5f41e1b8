// A TCP proxy for failure tests: put it between one client and PostgreSQL, then cut exactly
// that client's connection (pause) for as long as a test needs, while every other connection
// to the same server carries on. pause() closes every proxied connection and then closes each
// new one as soon as it is accepted, so a reconnecting client fails fast and keeps trying;
// resume() lets connections through again.
import { connect, createServer, type Socket } from 'node:net'

export interface TcpProxyTarget {
  targetHost: string
  targetPort: number
}

export interface TcpProxy {
  /** The port the proxy listens on, on 127.0.0.1. */
  readonly port: number
  /** The same postgres:// URL, pointed at the proxy (user, password, database and options kept). */
  url(databaseUrl: string): string
  /** Destroys every open connection and refuses (closes at once) new ones until resume(). */
  pause(): void
  resume(): void
  readonly isPaused: boolean
  /** Open client connections being proxied now. */
  readonly connections: number
  /** Connections accepted so far, refused ones included: how often the client tried. */
  readonly accepted: number
  close(): Promise<void>
}

/** The host and port of a postgres:// URL, as a proxy target. */
export function targetOf(databaseUrl: string): TcpProxyTarget {
  const url = new URL(databaseUrl)
  return { targetHost: url.hostname || '127.0.0.1', targetPort: Number(url.port || 5432) }
}

export async function startTcpProxy(target: TcpProxyTarget): Promise<TcpProxy> {
  const pairs = new Set<{ client: Socket; upstream: Socket }>()
  let isPaused = false
  let accepted = 0

  const server = createServer((client) => {
    accepted++
    if (isPaused) {
      client.on('error', () => undefined)
      client.destroy()
      return
    }
    const upstream = connect(target.targetPort, target.targetHost)
    const pair = { client, upstream }
    pairs.add(pair)
    // Either side closing or failing closes the other: the client sees what it would see if
    // the server went away.
    const close = () => {
      pairs.delete(pair)
      client.destroy()
      upstream.destroy()
    }
    for (const socket of [client, upstream]) {
      socket.setNoDelay(true)
      socket.on('error', close)
      socket.on('close', close)
    }
    client.pipe(upstream)
    upstream.pipe(client)
  })

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject)
      resolve()
    })
  })
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('tcp proxy: no port')
  const port = address.port

  const destroyAll = () => {
    for (const { client, upstream } of pairs) {
      client.destroy()
      upstream.destroy()
    }
    pairs.clear()
  }

  return {
    port,
    url(databaseUrl) {
      const url = new URL(databaseUrl)
      url.hostname = '127.0.0.1'
      url.port = String(port)
      return url.toString()
    },
    pause() {
      isPaused = true
      destroyAll()
    },
    resume() {
      isPaused = false
    },
    get isPaused() {
      return isPaused
    },
    get connections() {
      return pairs.size
    },
    get accepted() {
      return accepted
    },
    close() {
      isPaused = true
      destroyAll()
      return new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
