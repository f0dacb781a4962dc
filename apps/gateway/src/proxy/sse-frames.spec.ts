import { classifyEvent, eventEnd, FrameKind, midstreamErrorFrame, parseFrame, rewriteErrorFrame, USAGE_NULL_KEY, usageNullSpan } from './sse-frames';

function classify(event: string): FrameKind {
  const buf = Buffer.from(`xx${event}\n\n`);
  return classifyEvent(buf, 2, buf.length - 2);
}

describe('SSE frames', () => {
  it('classifies content, done, usage, error and other frames', () => {
    expect(classify('data: {"id":"c","choices":[{"index":0,"delta":{"content":"hi"}}]}')).toBe(FrameKind.Content);
    expect(classify('data: [DONE]')).toBe(FrameKind.Done);
    expect(classify('data: {"id":"c","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}')).toBe(FrameKind.Usage);
    expect(classify('data: {"error":{"message":"boom","type":"InternalServerError","code":500}}')).toBe(FrameKind.Error);
    expect(classify('data: {"object":"error","message":"boom","type":"X","code":500}')).toBe(FrameKind.Error);
    expect(classify(': keep-alive')).toBe(FrameKind.Other);
  });

  it('never takes text that mentions usage inside content for a usage chunk', () => {
    // quotes inside JSON strings are escaped, so the needle cannot match content
    const content = JSON.stringify({ choices: [{ delta: { content: 'the "usage":{ key' } }] });
    expect(classify(`data: ${content}`)).toBe(FrameKind.Content);
  });

  it('finds event ends across lone newlines, and not in an unterminated tail', () => {
    const buf = Buffer.from('data: a\nb\n\ndata: c\n\ndata: d\n');
    const first = eventEnd(buf, 0);
    expect(buf.toString('utf8', 0, first)).toBe('data: a\nb');
    const second = eventEnd(buf, first + 2);
    expect(buf.toString('utf8', first + 2, second)).toBe('data: c');
    expect(eventEnd(buf, second + 2)).toBe(-1);
    expect(classify('data:[DONE]')).toBe(FrameKind.Done);
    expect(classify('data: [DONE]x')).toBe(FrameKind.Content);
  });

  it('parses a frame payload and rejects junk', () => {
    const buf = Buffer.from('data: {"a":1}');
    expect(parseFrame(buf, 0, buf.length)).toEqual({ a: 1 });
    const junk = Buffer.from('data: {nope');
    expect(parseFrame(junk, 0, junk.length)).toBeNull();
  });

  it('rewrites vLLM error frames into the OpenAI envelope and keeps their status', () => {
    const buf = Buffer.from('data: {"error":{"message":"CUDA OOM","type":"InternalServerError","param":null,"code":500}}');
    const { frame, status } = rewriteErrorFrame(buf, 0, buf.length);
    expect(status).toBe(500);
    const text = frame.toString();
    expect(text.endsWith('\n\n')).toBe(true);
    expect(JSON.parse(text.slice(6))).toEqual({ error: { message: 'CUDA OOM', type: 'server_error', param: null, code: null } });
  });

  it('builds a mid-stream error frame in the envelope', () => {
    const text = midstreamErrorFrame('engine died').toString();
    expect(JSON.parse(text.slice(6)).error).toEqual({ message: 'engine died', type: 'server_error', param: null, code: 'upstream_error' });
  });

  it('finds the "usage":null member with its joining comma, so cutting it leaves valid JSON', () => {
    const cut = (event: string): string | null => {
      const buf = Buffer.from(event);
      const at = buf.indexOf(USAGE_NULL_KEY);
      const span = usageNullSpan(buf, 0, buf.length, at);
      return span === null ? null : buf.toString('utf8', 0, span.from) + buf.toString('utf8', span.to);
    };
    expect(cut('data: {"id":"c","choices":[{"text":"a"}],"usage":null}')).toBe('data: {"id":"c","choices":[{"text":"a"}]}');
    expect(cut('data: {"usage":null,"id":"c"}')).toBe('data: {"id":"c"}');
    expect(JSON.parse(cut('data: {"id":"c","usage":null,"choices":[]}')!.slice(6))).toEqual({ id: 'c', choices: [] });
    // not a whole member: left alone
    expect(cut('data: {"usage":null}')).toBeNull();
  });
});
