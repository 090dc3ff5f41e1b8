// The compatibility routes' wire shapes (src/protocol/compat.ts): each system's status words,
// field names and progress scale, built from the job document (docs/compat.md).
import {
  apiJobsBody,
  apiJobsEvent,
  apiQueueBody,
  apiV1StatusBody,
  progressFraction,
} from '../../src/protocol/compat.js'
import { jobDocument } from '../helpers/job-document.js'

const ID = '00000000-0000-4000-8000-000000000001'
const DONE = '2026-01-01T00:01:00.000Z'
const doc = (version: number, patch = {}) => jobDocument(ID, version, patch)

describe('api-jobs poll', () => {
  const base = { id: ID, type: 'test', created_at: '2026-01-01T00:00:00.000Z' }
  it('says pending and processing with no result, error or completed_at', () => {
    expect(apiJobsBody(doc(1))).toEqual({ ...base, status: 'pending' })
    expect(apiJobsBody(doc(2, { status: 'running', progress: 50 }))).toEqual({
      ...base,
      status: 'processing',
    })
  })
  it('adds result and completed_at when completed, error as a string when failed', () => {
    expect(
      apiJobsBody(doc(3, { status: 'completed', result: { n: 1 }, completed_at: DONE })),
    ).toEqual({ ...base, status: 'completed', result: { n: 1 }, completed_at: DONE })
    expect(
      apiJobsBody(
        doc(3, { status: 'failed', error: { message: 'boom', code: 'E' }, completed_at: DONE }),
      ),
    ).toEqual({ ...base, status: 'failed', error: 'boom', completed_at: DONE })
  })
  it('reads a cancelled job as failed, with a message that says so', () => {
    expect(apiJobsBody(doc(2, { status: 'cancelled', completed_at: DONE }))).toEqual({
      ...base,
      status: 'failed',
      error: 'The job was cancelled.',
      completed_at: DONE,
    })
  })
})

describe('api-jobs admin stream', () => {
  it('has queued/processing/completed/failed, progress as a fraction and a default step', () => {
    expect(apiJobsEvent(doc(1))).toEqual({ status: 'queued', progress: 0, step: 'initializing' })
    expect(apiJobsEvent(doc(2, { status: 'running', progress: 25, step: 'parse' }))).toEqual({
      status: 'processing',
      progress: 0.25,
      step: 'parse',
    })
    expect(apiJobsEvent(doc(3, { status: 'completed', progress: 90 }))).toMatchObject({
      status: 'completed',
      progress: 1,
    })
    expect(apiJobsEvent(doc(3, { status: 'cancelled' })).status).toBe('failed')
  })
  it('keeps the two decimals of jobwire progress exactly', () => {
    expect(progressFraction(33.33)).toBe(0.3333)
    expect(progressFraction(100)).toBe(1)
  })
})

describe('api-queue and api-v1 polls', () => {
  it('api-queue: task_id, jobwire status words, progress 0–100, result null until completed', () => {
    expect(apiQueueBody(doc(2, { status: 'running', progress: 12.5 }))).toEqual({
      task_id: ID,
      status: 'running',
      result: null,
      progress: 12.5,
      created_at: '2026-01-01T00:00:00.000Z',
      completed_at: null,
    })
    expect(apiQueueBody(doc(3, { status: 'completed', result: 7 })).result).toBe(7)
  })
  it('api-v1: the typed stream fields; a cancelled job has errorCode cancelled', () => {
    expect(apiV1StatusBody(doc(2, { status: 'cancelled' }))).toMatchObject({
      jobId: ID,
      status: 'cancelled',
      error: 'The job was cancelled.',
      errorCode: 'cancelled',
      result: null,
    })
    expect(
      apiV1StatusBody(doc(2, { status: 'failed', error: { message: 'x', code: null } })),
    ).toMatchObject({ error: 'x', errorCode: null })
  })
})
