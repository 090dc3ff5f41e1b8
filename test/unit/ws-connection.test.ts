// WsConnection over a stand-in socket: a peer that never reads cannot make the server
// buffer more than maxBufferedBytes for it.
import { EventEmitter } from 'node:events'
import type { WebSocket } from 'ws'
import type { StreamRegistry } from '../../src/transports/stream-registry.js'
import { WsConnection } from '../../src/transports/ws.js'

/** The part of ws's WebSocket that WsConnection uses; nothing it sends ever leaves. */
class StuckSocket extends EventEmitter {
  readonly OPEN = 1
  readyState = 1
  bufferedAmount = 0
  terminated = 0

  send(data: Buffer): void {
    this.bufferedAmount += data.length
  }

  terminate(): void {
    this.terminated++
    this.readyState = 3
  }
}

function connect(socket: StuckSocket) {
  let registered = 0
  const registry = {
    add: () => {
      registered++
      return () => registered--
    },
  } as unknown as StreamRegistry
  const connection = new WsConnection(
    socket as unknown as WebSocket,
    {
      tenantId: 't',
      ownerId: undefined,
      highWaterBytes: 1000,
      maxBufferedBytes: 8000,
    },
    registry,
  )
  return { connection, registered: () => registered }
}

it('terminates a peer whose unread messages pass maxBufferedBytes, and unregisters it', () => {
  const socket = new StuckSocket()
  const { connection, registered } = connect(socket)
  expect(registered()).toBe(1)
  const detail = 'x'.repeat(900)
  for (let i = 0; i < 8; i++) connection.mux.error(404, detail)
  expect(socket.terminated).toBe(0)
  connection.mux.error(404, detail)
  expect(socket.bufferedAmount).toBeGreaterThan(8000)
  expect(socket.terminated).toBe(1)
  expect(registered()).toBe(0)
  // Nothing more is written to it.
  const before = socket.bufferedAmount
  connection.mux.error(404, detail)
  expect(socket.bufferedAmount).toBe(before)
})
