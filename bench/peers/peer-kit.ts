// What every peer server shares, written as a competent team would: JWT verified with a key
// object made once, the RLS read in one round trip as a named prepared statement, SSE frames
// built once per event, and the same wire format as jobwire (snapshot, then JSON Patches that
// start with a test of /version), so the same client code measures every peer.
import { createSecretKey } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import fastJsonPatch from 'fast-json-patch'
import jwt from 'jsonwebtoken'
import type pg from 'pg'
import type { JobRow } from '../../src/db/schema.js'
import { toJobDocument } from '../../src/events/document.js'
import type { JobDocument } from '../../src/protocol/job.js'

export interface PeerPrincipal {
  tenantId: string
  userId: string
  role: string
}

const key = createSecretKey(Buffer.from(process.env.JWT_SECRET ?? '', 'utf8'))

export function authenticate(req: IncomingMessage): PeerPrincipal | undefined {
  const header = req.headers.authorization ?? ''
  if (!header.startsWith('Bearer ')) return undefined
  try {
    const claims = jwt.verify(header.slice(7), key, { algorithms: ['HS256'] }) as jwt.JwtPayload
    return {
      tenantId: String(claims.tenant_id),
      userId: String(claims.sub),
      role: String(claims.role),
    }
  } catch {
    return undefined
  }
}

/** The job as `principal` may see it (RLS), or undefined. One round trip. */
export async function readVisible(
  pool: pg.Pool,
  principal: PeerPrincipal,
  id: string,
): Promise<JobDocument | undefined> {
  const { rows } = await pool.query<JobRow>({
    name: 'peer-read-visible',
    text: 'SELECT * FROM jobwire_read_job($1::uuid, $2, $3, $4::uuid)',
    values: [principal.tenantId, principal.userId, principal.role, id],
  })
  return rows[0] ? toJobDocument(rows[0]) : undefined
}

export const JOB_EVENTS_PATH = /^\/v1\/jobs\/([0-9a-f-]{36})\/events$/

export function openSse(res: ServerResponse): void {
  res.socket?.setNoDelay(true)
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    'x-accel-buffering': 'no',
    connection: 'keep-alive',
  })
  res.write('retry: 2000\n\n')
}

export function frame(event: string, data: unknown, id: number): Buffer {
  return Buffer.from(`id: ${id}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`)
}

/** A patch from `from` to `to` in jobwire's format: a test of the base version first. */
export function patchFrame(from: JobDocument, to: JobDocument): Buffer {
  const ops = [
    { op: 'test', path: '/version', value: from.version },
    ...fastJsonPatch.compare(from, to),
  ]
  return frame('patch', ops, to.version)
}

export function reject(res: ServerResponse, status: number): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(`{"status":${status}}`)
}
