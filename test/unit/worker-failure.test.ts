// How a handler's thrown value becomes the job's error and the retry decision.
import { describeFailure, JobFailure } from '../../src/worker/failure.js'

describe('describeFailure', () => {
  it('keeps an Error message and a string code, retryable by default', () => {
    const error = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })
    expect(describeFailure(error)).toEqual({
      message: 'connect ECONNREFUSED',
      code: 'ECONNREFUSED',
      retryable: true,
      retryDelaySeconds: undefined,
    })
  })

  it('makes a failure final when the error says retryable === false', () => {
    expect(
      describeFailure(new JobFailure('bad input', { code: 'E_INPUT', retryable: false })),
    ).toMatchObject({ message: 'bad input', code: 'E_INPUT', retryable: false })
    expect(describeFailure(Object.assign(new Error('x'), { retryable: false })).retryable).toBe(
      false,
    )
  })

  it('passes a retry delay through, rounded, and ignores nonsense', () => {
    expect(
      describeFailure(new JobFailure('slow down', { retryDelaySeconds: 2.6 })).retryDelaySeconds,
    ).toBe(3)
    expect(
      describeFailure(Object.assign(new Error('x'), { retryDelaySeconds: -1 })).retryDelaySeconds,
    ).toBeUndefined()
  })

  it('describes thrown non-errors', () => {
    expect(describeFailure('plain string')).toMatchObject({ message: 'plain string', code: null })
    expect(describeFailure(undefined).message).toBe('the handler failed')
    expect(describeFailure({ name: 'WeirdThing' }).message).toBe('WeirdThing')
  })

  it('cuts very long messages', () => {
    const message = describeFailure(new Error('x'.repeat(10_000))).message
    expect(message.length).toBe(2000)
    expect(message.endsWith('…')).toBe(true)
  })
})
