// The resume ids of multiplexed SSE (`/v1/events`), spelled once for server and client:
//   jobs:  `j.` + comma-separated `<uuid without dashes>:<version base 36>`
//   feed:  `f.` + the server clock (epoch ms, base 36) when the event was written

export function encodeJobsResumeId(positions: Iterable<readonly [string, number]>): string {
  const parts: string[] = []
  for (const [id, version] of positions)
    parts.push(`${id.replaceAll('-', '')}:${version.toString(36)}`)
  return `j.${parts.join(',')}`
}

/** Parses a `j.` resume id into job → version; anything malformed yields an empty map. */
export function parseJobsResumeId(value: string | undefined): Map<string, number> {
  const out = new Map<string, number>()
  if (!value?.startsWith('j.')) return out
  for (const part of value.slice(2).split(',')) {
    const match = /^([0-9a-f]{32}):([0-9a-z]{1,11})$/.exec(part)
    if (!match) continue
    const hex = match[1]!
    const id = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
    const version = parseInt(match[2]!, 36)
    if (Number.isSafeInteger(version) && version >= 1) out.set(id, version)
  }
  return out
}

export function encodeFeedResumeId(epochMs: number): string {
  return `f.${epochMs.toString(36)}`
}

/** Parses an `f.` resume id into epoch ms, or undefined. */
export function parseFeedResumeId(value: string | undefined): number | undefined {
  const match = value === undefined ? null : /^f\.([0-9a-z]{1,11})$/.exec(value)
  if (!match) return undefined
  const ms = parseInt(match[1]!, 36)
  return Number.isSafeInteger(ms) && ms > 0 ? ms : undefined
}
