// Development keys: with no JWT key configured (never in production: config refuses), a
// random HS256 secret is created once and kept beside the embedded data, so tokens printed
// by one `npm start` still work after the next. Prints a ready admin token and curl lines.
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import jwt from 'jsonwebtoken'

export const DEMO_TENANT_ID = '00000000-0000-4000-8000-000000000001'

export interface DevSecrets {
  jwtSecret: string
  watchTokenSecret: string
}

/**
 * Where the development key lives for the data folder setting EMBEDDED_PG_DATA_DIR: beside
 * the folder it names (`.data/dev-secrets.json`), also when the data itself had to move
 * (embedded-postgres.ts); the start-up banner says both, and `npm run reset` removes both.
 */
export function devSecretsFile(dataDirSetting: string): string {
  return resolve(dirname(resolve(dataDirSetting)), 'dev-secrets.json')
}

export function loadOrCreateDevSecrets(dataDir: string): DevSecrets {
  const file = devSecretsFile(dataDir)
  if (existsSync(file)) {
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as Partial<DevSecrets>
    if (typeof parsed.jwtSecret === 'string' && typeof parsed.watchTokenSecret === 'string') {
      return { jwtSecret: parsed.jwtSecret, watchTokenSecret: parsed.watchTokenSecret }
    }
  }
  const secrets = {
    jwtSecret: randomBytes(32).toString('base64url'),
    watchTokenSecret: randomBytes(32).toString('base64url'),
  }
  mkdirSync(dirname(file), { recursive: true })
  writeFileSync(file, JSON.stringify(secrets, null, 2) + '\n', { mode: 0o600 })
  return secrets
}

export function signDevToken(
  secret: string,
  claims: { sub: string; role: 'admin' | 'member'; tenantId?: string },
): string {
  return jwt.sign({ tenant_id: claims.tenantId ?? DEMO_TENANT_ID, role: claims.role }, secret, {
    algorithm: 'HS256',
    subject: claims.sub,
    expiresIn: '30d',
  })
}

/** Where the development state is: the embedded data folder (if any) and the key file. */
export interface DevState {
  dataDir?: string
  secretsFile: string
}

export function devBanner(
  baseUrl: string,
  token: string,
  livePage: boolean,
  state: DevState,
): string {
  return [
    '',
    'jobwire is running in development mode (a generated key; never use it in production).',
    '',
    ...(state.dataDir ? [`Data (embedded PostgreSQL): ${state.dataDir}`] : []),
    `Development key: ${state.secretsFile}`,
    `Start afresh: stop jobwire, then \`npm run reset\` deletes ${state.dataDir ? 'both' : 'the key'}.`,
    '',
    `Admin token for the demo tenant ${DEMO_TENANT_ID} (valid 30 days):`,
    '',
    `  export TOKEN=${token}`,
    '',
    'Try it:',
    `  curl -s -X POST ${baseUrl}/v1/jobs -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{"type":"demo"}'`,
    `  curl -s ${baseUrl}/v1/jobs -H "Authorization: Bearer $TOKEN"`,
    `  curl -N "${baseUrl}/v1/jobs/<id>/events" -H "Authorization: Bearer $TOKEN"`,
    `  curl -s "${baseUrl}/v1/jobs/<id>/wait?timeout=30" -H "Authorization: Bearer $TOKEN"`,
    ...(livePage ? ['', `Live page: ${baseUrl}/`] : []),
    '',
  ].join('\n')
}
