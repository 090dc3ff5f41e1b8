// Load generator: autocannon in its own process, so the request generator never shares a
// core's event loop with the server it measures.
import autocannon from 'autocannon'
import { serve } from '../lib/child.js'

export interface CannonResult {
  requestsPerSec: number
  latencyP50: number
  latencyP99: number
  total: number
  non2xx: number
  errors: number
  timeouts: number
}

serve({
  run: async (args: {
    url: string
    connections: number
    durationSeconds: number
    headers: Record<string, string>
  }): Promise<CannonResult> => {
    const result = await autocannon({
      url: args.url,
      connections: args.connections,
      duration: args.durationSeconds,
      headers: args.headers,
      timeout: 10,
    })
    return {
      requestsPerSec: result.requests.average,
      latencyP50: result.latency.p50,
      latencyP99: result.latency.p99,
      total: result.requests.total,
      non2xx: result.non2xx,
      errors: result.errors,
      timeouts: result.timeouts,
    }
  },
})
