// The listener's reconnect schedule: how long it can wait after the database is back.
import { loadConfig } from '../../src/config/index.js'
import { reconnectDelayMs } from '../../src/events/reconnect-schedule.js'

describe('reconnectDelayMs', () => {
  it('waits the minimum first, then up to min·2^attempt, capped at the maximum', () => {
    const worst = (attempt: number) => reconnectDelayMs(attempt, 100, 2000, () => 1)
    expect([0, 1, 2, 3, 4, 5, 6, 40].map(worst)).toEqual([
      100, 200, 400, 800, 1600, 2000, 2000, 2000,
    ])
    expect(reconnectDelayMs(7, 100, 2000, () => 0)).toBe(0)
  })

  it('keeps every wait within LISTENER_RECONNECT_MAX_MS, which defaults to 2 s', () => {
    const config = loadConfig({})
    expect(config.LISTENER_RECONNECT_MAX_MS).toBe(2000)
    for (let attempt = 0; attempt < 1000; attempt++) {
      const delay = reconnectDelayMs(
        attempt,
        config.LISTENER_RECONNECT_MIN_MS,
        config.LISTENER_RECONNECT_MAX_MS,
      )
      expect(delay).toBeGreaterThanOrEqual(0)
      expect(delay).toBeLessThanOrEqual(config.LISTENER_RECONNECT_MAX_MS)
    }
  })
})
