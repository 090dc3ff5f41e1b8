// The compatibility streams' messages (src/transports/compat-formats.ts): unnamed SSE
// messages with the version as id; api-v1's typed messages from two consecutive documents.
import {
  API_JOBS_FRAMES,
  API_V1_FRAMES,
  apiV1Messages,
} from '../../src/transports/compat-formats.js'
import { jobDocument } from '../helpers/job-document.js'

const ID = '00000000-0000-4000-8000-000000000002'
const doc = (version: number, patch = {}) => jobDocument(ID, version, patch)
const types = (previous: ReturnType<typeof doc> | undefined, next: ReturnType<typeof doc>) =>
  apiV1Messages(previous, next).map((m) => m.type)

describe('api-v1 typed messages', () => {
  it('splits a change that starts the job and moves progress: step-change, then progress-update', () => {
    const messages = apiV1Messages(doc(1), doc(2, { status: 'running', step: 'a', progress: 10 }))
    expect(messages).toEqual([
      { type: 'step-change', data: { status: 'running', step: 'a', previousStep: null } },
      {
        type: 'progress-update',
        data: { progress: 10, currentStep: 'a', estimatedTimeRemaining: null },
      },
    ])
  })
  it('sends only progress-update for progress alone, nothing for an unseen field', () => {
    const running = doc(2, { status: 'running', step: 'a', progress: 10 })
    expect(types(running, { ...running, version: 3, progress: 20 })).toEqual(['progress-update'])
    expect(types(running, { ...running, version: 3, attempts: 2 })).toEqual([])
  })
  it('ends with complete {result}, or failed {error, errorCode} for failed and cancelled', () => {
    const running = doc(2, { status: 'running', progress: 50 })
    expect(
      apiV1Messages(running, doc(3, { status: 'completed', progress: 50, result: 1 })),
    ).toEqual([{ type: 'complete', data: { result: 1 } }])
    expect(
      apiV1Messages(running, {
        ...running,
        version: 3,
        status: 'failed',
        error: { message: 'm', code: 'C' },
      }).at(-1),
    ).toEqual({ type: 'failed', data: { error: 'm', errorCode: 'C' } })
    expect(apiV1Messages(running, { ...running, version: 3, status: 'cancelled' }).at(-1)).toEqual({
      type: 'failed',
      data: { error: 'The job was cancelled.', errorCode: 'cancelled' },
    })
  })
})

describe('frames', () => {
  it('api-v1: connected first, every message unnamed with the version as id', () => {
    const text = API_V1_FRAMES.first(undefined, doc(4), 'conn-1').toString()
    expect(text.split('\n\n').filter(Boolean)).toEqual([
      `id: 4\ndata: {"type":"connected","data":{"connectionId":"conn-1","jobId":"${ID}"}}`,
      'id: 4\ndata: {"type":"progress-update","data":{"progress":0,"currentStep":null,"estimatedTimeRemaining":null}}',
    ])
    expect(API_V1_FRAMES.gone(doc(4)).toString()).toContain('"errorCode":"deleted"')
  })
  it('api-jobs: the current state first; a change it cannot show sends nothing', () => {
    expect(API_JOBS_FRAMES.first(undefined, doc(1), '').toString()).toBe(
      'id: 1\ndata: {"status":"queued","progress":0,"step":"initializing"}\n\n',
    )
    expect(API_JOBS_FRAMES.change(doc(1), doc(2, { eta_seconds: 9 })).length).toBe(0)
    expect(API_JOBS_FRAMES.gone(doc(1)).length).toBe(0)
  })
})
