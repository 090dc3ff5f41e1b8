// The process logger (pino, JSON lines). Tokens never reach a log line: the Authorization
// header is redacted and token-bearing query parameters are masked in every logged URL.
import { pino, type Logger } from 'pino'

export type { Logger }

const TOKEN_PARAMS = /([?&](?:token|access_token|watch_token)=)[^&#]*/gi

/** `/v1/jobs/x/events?token=abc&format=full` → `/v1/jobs/x/events?token=[redacted]&format=full` */
export function redactUrl(url: string | undefined): string | undefined {
  return url?.replace(TOKEN_PARAMS, (_m, name: string) => `${name}[redacted]`)
}

export function createLogger(options: { level: string; pretty: boolean }): Logger {
  return pino({
    level: options.level,
    base: { service: 'jobwire' },
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
    ...(options.pretty
      ? { transport: { target: 'pino-pretty', options: { singleLine: true } } }
      : {}),
  })
}
