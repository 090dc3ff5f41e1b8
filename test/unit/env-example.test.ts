// .env.example mirrors src/config/schema.ts: every variable once, each default exactly as the
// service applies it. Reads the file; nothing else.
import { readFileSync } from 'node:fs'
import type { ZodType } from 'zod'
import { loadConfig } from '../../src/config/index.js'
import { envSchema } from '../../src/config/schema.js'

interface Entry {
  key: string
  value: string
  /** `# KEY=value`: no fixed default, the value is an example. */
  isCommented: boolean
  /** The line just above, which should say what the variable does. */
  previousLine: string
  lineNumber: number
}

const ENTRY = /^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$/

function parseEnvExample(text: string): Entry[] {
  const lines = text.split(/\r?\n/)
  const entries: Entry[] = []
  lines.forEach((line, index) => {
    const match = ENTRY.exec(line.trim())
    if (!match) return
    entries.push({
      key: match[2]!,
      value: unquote(match[3]!.trim()),
      isCommented: match[1] !== undefined,
      previousLine: (lines[index - 1] ?? '').trim(),
      lineNumber: index + 1,
    })
  })
  return entries
}

function unquote(value: string): string {
  return /^(["']).*\1$/.test(value) ? value.slice(1, -1) : value
}

const text = readFileSync(new URL('../../.env.example', import.meta.url), 'utf8')
const entries = parseEnvExample(text)
const schemaKeys = Object.keys(envSchema.shape).sort()
const shape = envSchema.shape as unknown as Record<string, ZodType>

describe('.env.example', () => {
  it('lists every variable of the schema exactly once', () => {
    const listed = entries.map((e) => e.key)
    expect([...listed].sort()).toEqual(schemaKeys)
    expect(new Set(listed).size).toBe(listed.length)
  })

  it('lists no variable that the schema does not know', () => {
    const unknown = entries.map((e) => e.key).filter((key) => !(key in envSchema.shape))
    expect(unknown).toEqual([])
  })

  it('puts a one-line comment above each variable', () => {
    const uncommented = entries
      .filter((e) => !e.previousLine.startsWith('# ') || ENTRY.test(e.previousLine))
      .map((e) => `${e.key} (line ${e.lineNumber})`)
    expect(uncommented).toEqual([])
  })

  describe.each(entries.filter((e) => !e.isCommented))('$key=$value', (entry) => {
    it("is the schema's default", () => {
      const schema = shape[entry.key]!
      const fallback = schema.safeParse(undefined)
      expect(fallback.success).toBe(true)
      expect(fallback.data).not.toBeUndefined()
      expect(schema.parse(entry.value)).toEqual(fallback.data)
    })

    it('changes nothing when loaded by loadConfig', () => {
      // NODE_ENV itself is the one key whose default the base environment would override.
      const base: NodeJS.ProcessEnv = entry.key === 'NODE_ENV' ? {} : { NODE_ENV: 'test' }
      const key = entry.key as keyof ReturnType<typeof loadConfig>
      expect(loadConfig({ ...base, [entry.key]: entry.value })[key]).toEqual(loadConfig(base)[key])
    })
  })

  describe.each(entries.filter((e) => e.isCommented))('# $key=$value', (entry) => {
    it('has no schema default, so it is rightly commented out', () => {
      const fallback = shape[entry.key]!.safeParse(undefined)
      expect(fallback.success).toBe(true)
      expect(fallback.data).toBeUndefined()
    })

    it('shows an example value that the schema accepts', () => {
      const result = shape[entry.key]!.safeParse(entry.value)
      expect(result.error?.issues).toBeUndefined()
    })
  })

  it('as a whole, loads to exactly the configuration of an empty environment', () => {
    const uncommented = Object.fromEntries(
      entries.filter((e) => !e.isCommented).map((e) => [e.key, e.value]),
    )
    expect(loadConfig(uncommented)).toEqual(loadConfig({}))
  })
})
