// The process logger (pino, JSON lines). Tokens never reach a log line: the Authorization
// header is redacted, token-bearing query parameters are masked in every logged URL, anything
// JWT-shaped is masked wherever it appears in a URL or an error (percent-encoded too: express
// decodes `%2E` in a path segment to a dot), and logged errors lose header-carrying members.
import { pino, type DestinationStream, type Logger } from 'pino'

export type { Logger }

const TOKEN_PARAMS = /([?&](?:token|access_token|watch_token)=)[^&#\s]*/gi
/** A JWT (header.payload.signature, base64url): JSON headers always start with `eyJ`. */
const JWT = /eyJ[\w-]*\.[\w-]+\.[\w-]*/
/**
 * A run of characters a token can be spelled with in a URL, percent-escapes included: a path
 * segment, a query value, a word of an error message. A run that spells a JWT once its
 * escapes are decoded is masked whole.
 */
const TOKEN_RUN = /[\w.%-]+/g
const ESCAPE = /%([0-9A-Fa-f]{2})/g
/** `%252E` is `%2E` once decoded, a dot twice: decode this many times at most. */
const MAX_DECODES = 3
/** Error members that can carry a whole request (headers included) or a client config. */
const ERROR_DROP = ['headers', 'config', 'request', 'response', 'req', 'res', 'socket', 'body']

const TOKEN_PARAM_NAMES = new Set(['token', 'access_token', 'watch_token'])

/**
 * `/v1/jobs/x/events?token=abc&format=full` → `/v1/jobs/x/events?token=[redacted]&format=full`.
 * Parameter names are compared decoded (`?%74oken=` authenticates too), and anything
 * JWT-shaped elsewhere in the URL is masked as well.
 */
export function redactUrl(url: string | undefined): string | undefined {
  if (url === undefined) return undefined
  const q = url.indexOf('?')
  if (q < 0) return maskJwts(url)
  const params = url
    .slice(q + 1)
    .split('&')
    .map((part) => {
      const eq = part.indexOf('=')
      const rawName = eq < 0 ? part : part.slice(0, eq)
      let name = rawName
      try {
        name = decodeURIComponent(rawName.replaceAll('+', ' '))
      } catch {
        // a malformed escape: compare the raw name
      }
      return TOKEN_PARAM_NAMES.has(name.toLowerCase()) ? `${rawName}=[redacted]` : part
    })
  return maskJwts(`${url.slice(0, q)}?${params.join('&')}`)
}

/** Masks token query parameters and anything shaped like a JWT in free text. */
export function redactText(text: string): string {
  return maskJwts(text.replace(TOKEN_PARAMS, (_m, name: string) => `${name}[redacted]`))
}

/** Replaces every run of URL characters that spells a JWT, escaped or not, by `[redacted]`. */
function maskJwts(text: string): string {
  return text.replace(TOKEN_RUN, (run) => (spellsJwt(run) ? '[redacted]' : run))
}

function spellsJwt(run: string): boolean {
  let decoded = run
  // Byte by byte: a JWT is ASCII, and a malformed escape elsewhere must not hide one.
  for (let i = 0; i < MAX_DECODES && decoded.includes('%'); i++) {
    const next = decoded.replace(ESCAPE, (_m, hex: string) =>
      String.fromCharCode(parseInt(hex, 16)),
    )
    if (next === decoded) break
    decoded = next
  }
  return JWT.test(decoded)
}

/**
 * The `err` serializer: pino's standard one, minus members that may hold request headers,
 * with tokens masked in the message and stack (an error message may quote a URL).
 */
export function serializeError(error: unknown): unknown {
  // An error already serialized (a plain object) is masked as it is.
  const serialized: unknown = error instanceof Error ? pino.stdSerializers.err(error) : error
  if (typeof serialized !== 'object' || serialized === null) return serialized
  const out: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(serialized)) {
    if (ERROR_DROP.includes(key)) continue
    out[key] =
      typeof value === 'string'
        ? redactText(value)
        : key === 'cause' || key === 'aggregateErrors'
          ? Array.isArray(value)
            ? value.map(serializeError)
            : serializeError(value)
          : value
  }
  return out
}

export function createLogger(options: {
  level: string
  pretty: boolean
  /** Where JSON lines go (default stdout); tests pass an in-memory stream. */
  destination?: DestinationStream
}): Logger {
  const pinoOptions = {
    level: options.level,
    base: { service: 'jobwire' },
    serializers: { err: serializeError },
    redact: {
      paths: [
        'req.headers.authorization',
        'req.headers.cookie',
        'req.headers["sec-websocket-protocol"]',
        'headers.authorization',
        'token',
        'watch_token',
        '*.token',
        '*.watch_token',
      ],
      censor: '[redacted]',
    },
    ...(options.pretty && !options.destination
      ? { transport: { target: 'pino-pretty', options: { singleLine: true } } }
      : {}),
  }
  return options.destination ? pino(pinoOptions, options.destination) : pino(pinoOptions)
}
