// Floors of the same run for fan-out and memory: a bare node:http server (bench/floors/
// bare-sse-server.ts) holding N idle SSE connections from the same client processes, its RSS
// per connection after a forced GC, and the time from "start writing one pre-framed buffer to
// each socket" to "the last client parsed it". Measured once per N and run, then shared.
import { sleep } from '../lib/child.js'
import type { Context, Scope, ServerInfo } from '../lib/context.js'
import type { SseClientGroup } from '../lib/groups.js'
import { median } from '../lib/stats.js'

export const FANOUT_ROUNDS = 5
/** Rounds run first and not counted (JIT, first-touch allocations), for both sides alike. */
export const FANOUT_WARMUP_ROUNDS = 1

export interface FanoutFloor {
  clients: number
  /** Median over rounds of "last client parsed it − first write". */
  lastMs: number
  roundsMs: number[]
  /** How long the write loop itself took (ms), per round. */
  writeLoopMs: number[]
  frameBytes: number
  rssEmptyKiB: number
  rssFullKiB: number
  rssPerConnKiB: number
}

export async function fanoutFloor(
  ctx: Context,
  scope: Scope,
  clients: SseClientGroup,
  n: number,
): Promise<FanoutFloor> {
  const key = `fanout-floor:${n}`
  const known = ctx.shared.get(key) as FanoutFloor | undefined
  if (known) return known

  const server = await scope.start<ServerInfo>('floors/bare-sse-server.ts', {
    name: 'bare-sse-server',
    nodeArgs: ['--expose-gc'],
  })
  try {
    await sleep(500)
    await server.call('gc')
    const rssEmptyKiB = server.rssKiB()
    const targets = Array.from({ length: n }, () => ({ job: 'floor', path: '/events' }))
    await clients.open(server.info.url, ctx.token, targets)
    await sleep(500)
    await server.call('gc')
    const rssFullKiB = server.rssKiB()

    const roundsMs: number[] = []
    const writeLoopMs: number[] = []
    let frameBytes = 0
    let version = 1
    for (let round = -FANOUT_WARMUP_ROUNDS; round < FANOUT_ROUNDS; round++) {
      await clients.arm(++version)
      const b = await server.call<{ t0: number; t1: number; bytes: number }>('broadcast')
      const got = await clients.collect(10_000)
      if (got.reached < got.total)
        throw new Error(`floor round ${round}: ${got.reached}/${got.total} clients got the frame`)
      if (round < 0) continue
      roundsMs.push(Math.max(...got.times) - b.t0)
      writeLoopMs.push(b.t1 - b.t0)
      frameBytes = b.bytes
      await sleep(300)
    }
    await clients.closeAll()
    await clients.stats(true) // the floor's samples must not mix with jobwire's
    const floor: FanoutFloor = {
      clients: n,
      lastMs: median(roundsMs),
      roundsMs,
      writeLoopMs,
      frameBytes,
      rssEmptyKiB,
      rssFullKiB,
      rssPerConnKiB: (rssFullKiB - rssEmptyKiB) / n,
    }
    ctx.shared.set(key, floor)
    ctx.raw[key] = floor
    return floor
  } finally {
    await server.stop()
  }
}
