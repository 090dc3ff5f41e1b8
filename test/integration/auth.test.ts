// Authentication (docs/contract.md §4): which tokens open the API and which get a 401 (or a 403 for
// a valid token that may not do the thing). HS256 is the default test service; RS256, ES256, JWKS,
// issuer/audience and namespaced claims each get a service of their own.
import { createHmac, generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import jwt from 'jsonwebtoken'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import {
  TEST_JWT_SECRET,
  createJob,
  newTenant,
  startTestService,
  tokenFor,
  type TestService,
} from '../helpers/service.js'

let database: TestDatabase
let service: TestService
const extraServices: TestService[] = []
const servers: Server[] = []

beforeAll(async () => {
  database = await createTestDatabase()
  service = await startTestService(database.url)
})
afterAll(async () => {
  for (const s of extraServices) await s.close()
  await service?.close()
  for (const s of servers) await new Promise((resolve) => s.close(resolve))
  await database?.drop()
})

async function extraService(env: Record<string, string>): Promise<TestService> {
  const s = await startTestService(database.url, env)
  extraServices.push(s)
  return s
}

const base64url = (value: unknown) =>
  Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url')

function claims(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000)
  return {
    sub: 'user-1',
    tenant_id: randomUUID(),
    role: 'admin',
    iat: now,
    exp: now + 600,
    ...overrides,
  }
}

/** HS256 over raw bytes, built by hand so that nothing can refuse to sign it. */
function handSignedHs256(
  payload: Record<string, unknown>,
  secret: string | Buffer,
  header: Record<string, unknown> = { alg: 'HS256', typ: 'JWT' },
): string {
  const unsigned = `${base64url(header)}.${base64url(payload)}`
  return `${unsigned}.${createHmac('sha256', secret).update(unsigned).digest('base64url')}`
}

function signAsymmetric(
  payload: Record<string, unknown>,
  key: KeyObject,
  algorithm: 'RS256' | 'ES256',
  keyid?: string,
): string {
  return jwt.sign(payload, key, { algorithm, ...(keyid ? { keyid } : {}) })
}

async function expect401(res: Response, detail?: RegExp): Promise<Record<string, unknown>> {
  expect(res.status).toBe(401)
  expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/)
  expect(res.headers.get('www-authenticate')).toMatch(/^Bearer\b/)
  const body = (await res.json()) as Record<string, unknown>
  expect(body).toMatchObject({ status: 401, type: expect.stringMatching(/unauthorized$/) })
  expect(typeof body.title).toBe('string')
  if (detail) expect(String(body.detail)).toMatch(detail)
  return body
}

async function expect403(res: Response): Promise<void> {
  expect(res.status).toBe(403)
  expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/)
  expect(await res.json()).toMatchObject({ status: 403, type: expect.stringMatching(/forbidden$/) })
}

const list = (s: TestService, init: RequestInit & { token?: string } = {}) =>
  s.fetch('/v1/jobs', init)

describe('tokens that are refused with 401', () => {
  it('refuses a request without any token', async () => {
    await expect401(await list(service))
    await expect401(
      await service.fetch('/v1/jobs', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"type":"x"}',
      }),
    )
  })

  it.each([
    ['garbage', 'garbage'],
    ['"Bearer" without a token', 'Bearer'],
    ['"Bearer " and spaces', 'Bearer    '],
    ['a Basic credential', 'Basic dXNlcjpwYXNz'],
    ['"Basic x"', 'Basic x'],
    ['a bearer token that is not a JWT', 'Bearer not-a-jwt'],
    ['a JWT with a broken payload', `Bearer ${base64url({ alg: 'HS256' })}.!!!.abc`],
    ['two tokens', `Bearer ${tokenFor()} ${tokenFor()}`],
  ])('refuses a malformed Authorization header: %s', async (_name, header) => {
    await expect401(await list(service, { headers: { authorization: header } }))
  })

  it('refuses an expired token', async () => {
    const token = handSignedHs256(
      claims({ exp: Math.floor(Date.now() / 1000) - 60 }),
      TEST_JWT_SECRET,
    )
    await expect401(await list(service, { token }), /expired/)
  })

  it('refuses a token that is not valid yet', async () => {
    const token = handSignedHs256(
      claims({ nbf: Math.floor(Date.now() / 1000) + 600 }),
      TEST_JWT_SECRET,
    )
    await expect401(await list(service, { token }))
  })

  it('refuses a token signed with another secret', async () => {
    const token = tokenFor({}, {}, 'another-secret-another-secret-another-secret')
    await expect401(await list(service, { token }), /signature/)
  })

  it('refuses a valid token whose payload was altered', async () => {
    const [header, , signature] = tokenFor({ role: 'member' }).split('.')
    const forged = `${header}.${base64url(claims({ role: 'admin' }))}.${signature}`
    await expect401(await list(service, { token: forged }))
  })

  it('refuses an unsigned token (alg: none), with or without a signature part', async () => {
    const payload = base64url(claims())
    for (const alg of ['none', 'None', 'NONE']) {
      const head = base64url({ alg, typ: 'JWT' })
      await expect401(await list(service, { token: `${head}.${payload}.` }))
      await expect401(
        await list(service, { headers: { authorization: `Bearer ${head}.${payload}` } }),
      )
    }
  })

  it('refuses an unsigned token that poses as a watch token', async () => {
    const job = await createJob(service, newTenant().admin)
    const payload = base64url({ ...claims(), tid: randomUUID(), job: job.id, aud: 'jobwire:watch' })
    const head = base64url({ alg: 'none', typ: 'JWT', kid: 'jobwire-watch' })
    await expect401(await service.fetch(`/v1/jobs/${job.id}`, { token: `${head}.${payload}.` }))
    const userKeySigned = handSignedHs256(
      { ...claims(), tid: randomUUID(), job: job.id, aud: 'jobwire:watch' },
      TEST_JWT_SECRET,
      { alg: 'HS256', typ: 'JWT', kid: 'jobwire-watch' },
    )
    await expect401(await service.fetch(`/v1/jobs/${job.id}`, { token: userKeySigned }))
  })

  it.each([
    ['a NUL character', 'ali\u0000ce'],
    ['a line break', 'alice\nadmin'],
    ['257 characters', 'a'.repeat(257)],
  ])('refuses a sub holding %s', async (_name, sub) => {
    const token = handSignedHs256(claims({ sub }), TEST_JWT_SECRET)
    await expect401(await list(service, { token }))
    await expect401(
      await service.fetch('/v1/jobs', {
        method: 'POST',
        token,
        headers: { 'content-type': 'application/json' },
        body: '{"type":"x"}',
      }),
    )
  })

  it('refuses an HS512 token when only HS256 is allowed', async () => {
    const token = jwt.sign(claims(), TEST_JWT_SECRET, { algorithm: 'HS512' })
    await expect401(await list(service, { token }))
  })

  it.each([
    ['without tenant_id', { tenant_id: undefined }],
    ['with a tenant_id that is not a UUID', { tenant_id: 'acme' }],
    ['with role "root"', { role: 'root' }],
    ['without role', { role: undefined }],
    ['without sub', { sub: undefined }],
    ['with an empty sub', { sub: '' }],
    ['with a numeric sub', { sub: 42 }],
  ])('refuses a correctly signed token %s', async (_name, overrides) => {
    const token = handSignedHs256(claims(overrides), TEST_JWT_SECRET)
    await expect401(await list(service, { token }))
  })

  it('does not take ?token= on a plain GET of a job', async () => {
    const t = newTenant()
    const job = await createJob(service, t.admin)
    await expect401(await service.fetch(`/v1/jobs/${job.id}?token=${t.admin}`))
    await expect401(await service.fetch(`/v1/jobs?token=${t.admin}`))
    const withHeader = await service.fetch(`/v1/jobs/${job.id}`, { token: t.admin })
    expect(withHeader.status).toBe(200)
  })

  it('never echoes the token in the problem', async () => {
    const token = tokenFor({}, {}, 'another-secret-another-secret-another-secret')
    const body = await expect401(await list(service, { token }))
    expect(JSON.stringify(body)).not.toContain(token.split('.')[2])
  })
})

describe('watch tokens', () => {
  async function watched() {
    const t = newTenant()
    const res = await service.fetch('/v1/jobs', {
      method: 'POST',
      token: t.alice,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'report' }),
    })
    expect(res.status).toBe(201)
    const job = (await res.json()) as { id: string; watch_token: string }
    expect(typeof job.watch_token).toBe('string')
    return { t, job, watch: job.watch_token }
  }

  it('open their own job for reading', async () => {
    const { job, watch } = await watched()
    const res = await service.fetch(`/v1/jobs/${job.id}`, { token: watch })
    expect(res.status).toBe(200)
    expect(await res.json()).toMatchObject({ id: job.id, status: 'queued' })
  })

  it('get 403 for another job, even one of the same owner', async () => {
    const { t, watch } = await watched()
    const other = await createJob(service, t.alice)
    await expect403(await service.fetch(`/v1/jobs/${other.id}`, { token: watch }))
    await expect403(await service.fetch(`/v1/jobs/${randomUUID()}`, { token: watch }))
  })

  it('cannot list, cancel or create', async () => {
    const { job, watch } = await watched()
    await expect403(await service.fetch('/v1/jobs', { token: watch }))
    await expect403(
      await service.fetch(`/v1/jobs/${job.id}/cancel`, { method: 'POST', token: watch }),
    )
    await expect403(
      await service.fetch('/v1/jobs', {
        method: 'POST',
        token: watch,
        headers: { 'content-type': 'application/json' },
        body: '{"type":"x"}',
      }),
    )
    const still = await service.fetch(`/v1/jobs/${job.id}`, { token: watch })
    expect(await still.json()).toMatchObject({ status: 'queued', version: 1 })
  })

  it('are refused with 401 once tampered with', async () => {
    const { job, watch } = await watched()
    const [header, payload] = watch.split('.')
    const forged = `${header}.${payload}.${'A'.repeat(43)}`
    await expect401(await service.fetch(`/v1/jobs/${job.id}`, { token: forged }))
  })

  it('are refused by a service that signs watch tokens with another key', async () => {
    const { job, watch } = await watched()
    const other = await extraService({
      JWT_SECRET: 'a-different-secret-a-different-secret-0123',
    })
    await expect401(await other.fetch(`/v1/jobs/${job.id}`, { token: watch }))
  })
})

describe('issuer and audience', () => {
  let strict: TestService
  beforeAll(async () => {
    strict = await extraService({
      JWT_ISSUER: 'https://idp.example.com/',
      JWT_AUDIENCE: 'jobwire-api',
    })
  })

  it('accepts a token from the configured issuer for the configured audience', async () => {
    const token = tokenFor({}, { issuer: 'https://idp.example.com/', audience: 'jobwire-api' })
    expect((await list(strict, { token })).status).toBe(200)
  })

  it('refuses a token from another issuer', async () => {
    const token = tokenFor({}, { issuer: 'https://evil.example.com/', audience: 'jobwire-api' })
    await expect401(await list(strict, { token }), /issuer/)
  })

  it('refuses a token for another audience', async () => {
    const token = tokenFor({}, { issuer: 'https://idp.example.com/', audience: 'other-api' })
    await expect401(await list(strict, { token }), /audience/)
  })

  it('refuses a token that names no issuer or no audience', async () => {
    await expect401(await list(strict, { token: tokenFor({}, { audience: 'jobwire-api' }) }))
    await expect401(
      await list(strict, { token: tokenFor({}, { issuer: 'https://idp.example.com/' }) }),
    )
  })
})

describe('public keys', () => {
  it('verifies RS256 tokens with JWT_PUBLIC_KEY and refuses those of another key', async () => {
    const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
    const stranger = generateKeyPairSync('rsa', { modulusLength: 2048 })
    const rs = await extraService({
      JWT_SECRET: '',
      JWT_PUBLIC_KEY: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      WATCH_TOKEN_SECRET: 'watch-token-secret-watch-token-secret-01',
    })
    const tenantId = randomUUID()
    const token = signAsymmetric(claims({ tenant_id: tenantId }), privateKey, 'RS256')
    const created = await createJob(rs, token)
    expect(created).toMatchObject({ status: 'queued' })
    expect((await list(rs, { token })).status).toBe(200)

    const foreign = signAsymmetric(claims({ tenant_id: tenantId }), stranger.privateKey, 'RS256')
    await expect401(await list(rs, { token: foreign }), /signature/)
    // A token signed with the old shared secret no longer works.
    await expect401(await list(rs, { token: tokenFor({ tenantId }) }))
  })

  it('refuses an HS256 token "signed" with the public key (algorithm confusion)', async () => {
    const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
    const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString()
    const rs = await extraService({
      JWT_SECRET: '',
      JWT_PUBLIC_KEY: pem,
      WATCH_TOKEN_SECRET: 'watch-token-secret-watch-token-secret-01',
    })
    await expect401(await list(rs, { token: handSignedHs256(claims(), pem) }))
  })

  it('verifies ES256 tokens with an EC public key', async () => {
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    const es = await extraService({
      JWT_SECRET: '',
      JWT_PUBLIC_KEY: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      WATCH_TOKEN_SECRET: 'watch-token-secret-watch-token-secret-01',
    })
    const token = signAsymmetric(claims(), privateKey, 'ES256')
    expect((await list(es, { token })).status).toBe(200)
    const stranger = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    await expect401(
      await list(es, { token: signAsymmetric(claims(), stranger.privateKey, 'ES256') }),
    )
  })
})

describe('JWKS', () => {
  let jwksService: TestService
  let jwksRequests = 0
  const signing = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const outsider = generateKeyPairSync('rsa', { modulusLength: 2048 })

  beforeAll(async () => {
    const jwk = {
      ...signing.publicKey.export({ format: 'jwk' }),
      kid: 'key-1',
      alg: 'RS256',
      use: 'sig',
    }
    const server = createServer((req, res) => {
      jwksRequests++
      if (req.url !== '/.well-known/jwks.json') {
        res.writeHead(404).end()
        return
      }
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ keys: [jwk] }))
    })
    servers.push(server)
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const { port } = server.address() as AddressInfo
    jwksService = await extraService({
      JWT_SECRET: '',
      JWKS_URL: `http://127.0.0.1:${port}/.well-known/jwks.json`,
      WATCH_TOKEN_SECRET: 'watch-token-secret-watch-token-secret-01',
    })
  })

  it('verifies a token signed by a key the JWKS lists', async () => {
    const token = signAsymmetric(claims(), signing.privateKey, 'RS256', 'key-1')
    expect((await list(jwksService, { token })).status).toBe(200)
    const job = await createJob(jwksService, token)
    expect((await jwksService.fetch(`/v1/jobs/${job.id}`, { token })).status).toBe(200)
    expect(jwksRequests).toBeGreaterThan(0)
  })

  it('refuses a token whose kid the JWKS does not list', async () => {
    const token = signAsymmetric(claims(), outsider.privateKey, 'RS256', 'key-2')
    await expect401(await list(jwksService, { token }))
  })

  it('refuses a token that claims a listed kid but was signed by another key', async () => {
    const token = signAsymmetric(claims(), outsider.privateKey, 'RS256', 'key-1')
    await expect401(await list(jwksService, { token }), /signature/)
  })

  it('refuses an HS256 token with a listed kid', async () => {
    const token = handSignedHs256(claims(), TEST_JWT_SECRET, {
      alg: 'HS256',
      typ: 'JWT',
      kid: 'key-1',
    })
    await expect401(await list(jwksService, { token }))
  })
})

describe('claim names', () => {
  it('reads tenant, role and user from namespaced claims when configured', async () => {
    const custom = await extraService({
      JWT_CLAIM_TENANT: 'https://example.com/tenant',
      JWT_CLAIM_ROLE: 'https://example.com/role',
      JWT_CLAIM_SUBJECT: 'https://example.com/user',
    })
    const tenantId = randomUUID()
    const token = handSignedHs256(
      claims({
        sub: undefined,
        tenant_id: undefined,
        role: undefined,
        'https://example.com/tenant': tenantId,
        'https://example.com/role': 'member',
        'https://example.com/user': 'carol',
      }),
      TEST_JWT_SECRET,
    )
    const job = await createJob(custom, token)
    const listed = await list(custom, { token })
    expect(listed.status).toBe(200)
    expect(
      ((await listed.json()) as { data: Array<{ id: string }> }).data.map((d) => d.id),
    ).toEqual([job.id])
    // The default claim names no longer count.
    await expect401(await list(custom, { token: tokenFor({ tenantId }) }), /example\.com\//)
  })
})
