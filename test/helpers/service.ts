// Starts jobwire in-process on port 0 against a test database, the way a client meets it.
import { randomUUID } from 'node:crypto'
import jwt from 'jsonwebtoken'
import { loadConfig } from '../../src/config/index.js'
import { startService, type RunningService } from '../../src/service.js'
import type { Logger } from '../../src/telemetry/logger.js'

export const TEST_JWT_SECRET = 'test-secret-test-secret-test-secret-0123456789'

/** The event source every test service starts with (the integration-replication project
 * sets replication; a test's own env wins). */
export const testEventSource = process.env.JOBWIRE_TEST_EVENT_SOURCE ?? 'notify'
/** application_name of that source's connection, as pg_stat_activity shows it. */
export const sourceApplicationName =
  testEventSource === 'replication' ? 'jobwire-replication' : 'jobwire-listener'

export interface TestService extends RunningService {
  /** fetch() relative to the service URL. */
  fetch(path: string, init?: RequestInit & { token?: string }): Promise<Response>
}

export async function startTestService(
  databaseUrl: string,
  env: Record<string, string> = {},
  options: { logger?: Logger } = {},
): Promise<TestService> {
  const config = loadConfig({
    NODE_ENV: 'test',
    DATABASE_URL: databaseUrl,
    JWT_SECRET: TEST_JWT_SECRET,
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'silent',
    MIGRATE_ON_START: 'false',
    SHUTDOWN_TIMEOUT_MS: '2000',
    EVENT_SOURCE: testEventSource,
    ...env,
  })
  const service = await startService(config, options)
  return {
    ...service,
    fetch: (path, init = {}) => {
      const { token, headers, ...rest } = init
      const h = new Headers(headers)
      if (token !== undefined) h.set('authorization', `Bearer ${token}`)
      return fetch(service.url + path, { ...rest, headers: h })
    },
  }
}

export interface TokenClaims {
  tenantId?: string
  sub?: string
  role?: 'admin' | 'member'
}

/** An HS256 user token for TEST_JWT_SECRET. */
export function tokenFor(
  claims: TokenClaims = {},
  options: jwt.SignOptions = {},
  secret = TEST_JWT_SECRET,
): string {
  return jwt.sign(
    { tenant_id: claims.tenantId ?? randomUUID(), role: claims.role ?? 'admin' },
    secret,
    {
      algorithm: 'HS256',
      subject: claims.sub ?? `user-${randomUUID().slice(0, 8)}`,
      expiresIn: '1h',
      ...options,
    },
  )
}

/** A fresh tenant with an admin and two members. */
export function newTenant() {
  const tenantId = randomUUID()
  return {
    tenantId,
    admin: tokenFor({ tenantId, role: 'admin', sub: 'admin-1' }),
    alice: tokenFor({ tenantId, role: 'member', sub: 'alice' }),
    bob: tokenFor({ tenantId, role: 'member', sub: 'bob' }),
  }
}

export async function createJob(
  service: TestService,
  token: string,
  body: Record<string, unknown> = { type: 'test' },
  headers: Record<string, string> = {},
): Promise<Record<string, unknown> & { id: string; version: number }> {
  const res = await service.fetch('/v1/jobs', {
    method: 'POST',
    token,
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  })
  if (res.status !== 201 && res.status !== 200)
    throw new Error(`create failed: ${res.status} ${await res.text()}`)
  return (await res.json()) as Record<string, unknown> & { id: string; version: number }
}
