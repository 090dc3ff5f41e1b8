// The client's SSE parser (HTML standard, "event stream interpretation"): any line ending,
// chunks split anywhere, comments, multi-line data, and ids that persist across events.
import { SseParser, type SseMessage } from '../../src/client/sse-reader.js'

function parse(chunks: string[], initialId?: string) {
  const messages: SseMessage[] = []
  const retries: number[] = []
  let activity = 0
  const parser = new SseParser(
    {
      onMessage: (m) => messages.push(m),
      onRetry: (ms) => retries.push(ms),
      onActivity: () => activity++,
    },
    initialId,
  )
  const encoder = new TextEncoder()
  for (const chunk of chunks) parser.push(encoder.encode(chunk))
  return { messages, retries, activity }
}

it('parses events, ids, retry and comments', () => {
  const { messages, retries } = parse([
    'retry: 2000\n\n: keep-alive\n\nid: 1\nevent: snapshot\ndata: {"a":1}\n\n',
    'id: 2\nevent: patch\ndata: [1]\n\n',
  ])
  expect(retries).toEqual([2000])
  expect(messages).toEqual([
    { event: 'snapshot', data: '{"a":1}', id: '1' },
    { event: 'patch', data: '[1]', id: '2' },
  ])
})

it('accepts CRLF and CR line endings, even when a chunk splits a CRLF', () => {
  const { messages } = parse(['event: a\r', '\ndata: x\r\n\r', '\nevent: b\rdata: y\r\r'])
  expect(messages.map((m) => [m.event, m.data])).toEqual([
    ['a', 'x'],
    ['b', 'y'],
  ])
})

it('joins multi-line data, strips one leading space, and defaults the event to message', () => {
  const { messages } = parse(['data:  two spaces\ndata:none\n\n'])
  expect(messages).toEqual([{ event: 'message', data: ' two spaces\nnone', id: undefined }])
})

it('keeps the last id across events without one, and from before the stream', () => {
  const { messages } = parse(['data: a\n\nid: 7\n\ndata: b\n\n'], '3')
  expect(messages.map((m) => m.id)).toEqual(['3', '7'])
})

it('dispatches nothing for an event without data, and waits for the blank line', () => {
  const { messages, activity } = parse(['event: end\n\n', 'event: end\ndata: {}\n'])
  expect(messages).toEqual([])
  expect(activity).toBe(2)
})

it('decodes UTF-8 split across chunks', () => {
  const bytes = new TextEncoder().encode('data: héllo ✓\n\n')
  const messages: SseMessage[] = []
  const parser = new SseParser({ onMessage: (m) => messages.push(m) })
  for (const byte of bytes) parser.push(Uint8Array.of(byte))
  expect(messages[0]!.data).toBe('héllo ✓')
})
