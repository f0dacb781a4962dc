import OpenAI, { toFile } from 'openai';
import { sseData, sseJson } from '../../../test/support/sim-sse';
import { multipartBoundary, MultipartError, parseMultipart } from './multipart';
import { startSim, type SimServer } from './sim-server';
import { parseWav, silentWav, WavError } from './wav';

/** A multipart body as browsers and SDKs write it. */
function form(fields: Record<string, string>, file?: { name: string; data: Buffer }, boundary = 'XyZ123'): { body: Buffer; type: string } {
  const parts: Buffer[] = [];
  for (const [k, v] of Object.entries(fields)) parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`));
  if (file) {
    parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${file.name}"\r\nContent-Type: audio/wav\r\n\r\n`), file.data, Buffer.from('\r\n'));
  }
  parts.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(parts), type: `multipart/form-data; boundary=${boundary}` };
}

describe('multipart and WAV parsing', () => {
  it('parses fields and files, file bytes intact (CRLF and boundary-like bytes inside)', () => {
    const data = Buffer.from('RIFF\r\n--XyZ12\r\nbinary\u0000end');
    const { body, type } = form({ model: 'm1', language: 'fr' }, { name: 'a.wav', data });
    const boundary = multipartBoundary(type)!;
    expect(boundary).toBe('XyZ123');
    const parsed = parseMultipart(body, boundary);
    expect([...parsed.fields]).toEqual([['model', 'm1'], ['language', 'fr']]);
    const file = parsed.files.get('file')!;
    expect(file.filename).toBe('a.wav');
    expect(file.contentType).toBe('audio/wav');
    expect(file.data.equals(data)).toBe(true);
    expect(multipartBoundary('multipart/form-data; boundary="a b"')).toBe('a b');
    expect(multipartBoundary('application/json')).toBeUndefined();
  });

  it('rejects malformed bodies', () => {
    expect(() => parseMultipart(Buffer.from('nothing here'), 'b')).toThrow(MultipartError);
    expect(() => parseMultipart(Buffer.from('--b\r\nContent-Disposition: form-data; name="x"\r\n\r\nno end'), 'b')).toThrow(MultipartError);
    expect(() => parseMultipart(Buffer.from('--b\r\nX: y\r\n\r\nv\r\n--b--'), 'b')).toThrow(MultipartError);
  });

  it('reads a WAV duration from its header', () => {
    expect(parseWav(silentWav(2.5)).durationS).toBeCloseTo(2.5, 6);
    expect(parseWav(silentWav(1, 8000))).toMatchObject({ channels: 1, sampleRate: 8000, byteRate: 16000, durationS: 1 });
    expect(() => parseWav(Buffer.from('not a wav at all'))).toThrow(WavError);
    const noData = silentWav(1).subarray(0, 36);
    expect(() => parseWav(noData)).toThrow(/no data chunk/);
    // A header that promises more data than the file holds counts what is there.
    const truncated = silentWav(2).subarray(0, 44 + 32000);
    expect(parseWav(truncated).durationS).toBe(1);
  });
});

describe('vllm-sim audio transcriptions and translations', () => {
  let sim: SimServer;
  let client: OpenAI;
  beforeAll(async () => {
    sim = await startSim({ models: ['whisper', 'm2'] });
    client = new OpenAI({ baseURL: `${sim.url}/v1`, apiKey: 'x', maxRetries: 0 });
  });
  afterAll(() => sim.close());
  beforeEach(() => sim.reset());

  const post = (path: string, f: { body: Buffer; type: string }): Promise<Response> =>
    fetch(`${sim.url}${path}`, { method: 'POST', headers: { 'content-type': f.type }, body: f.body });

  it('transcribes through the openai SDK: one word per started second, usage in seconds', async () => {
    const res = await client.audio.transcriptions.create({ model: 'whisper', file: await toFile(silentWav(2.5), 'a.wav') });
    expect(res.text).toBe(' lorem ipsum dolor');
    expect((res as unknown as { usage: unknown }).usage).toEqual({ type: 'duration', seconds: 3 });
    expect(sim.stats).toMatchObject({ requests: 1, completed: 1, promptTokens: 4, generationTokens: 3 });
    const rec = sim.received.at(-1)!;
    expect(rec.path).toBe('/v1/audio/transcriptions');
    expect(rec.body).toMatchObject({ model: 'whisper', file: { filename: 'a.wav', bytes: 44 + 80000 } });
  });

  it('answers JSON for text and verbose_json too (as vLLM), and translations without usage', async () => {
    const text = await post('/v1/audio/transcriptions', form({ model: 'whisper', response_format: 'text' }, { name: 'a.wav', data: silentWav(2) }));
    expect(text.headers.get('content-type')).toBe('application/json');
    expect(await text.json()).toEqual({ text: ' lorem ipsum', usage: { type: 'duration', seconds: 2 } });

    const verbose = await post('/v1/audio/transcriptions', form({ response_format: 'verbose_json', language: 'de' }, { name: 'a.wav', data: silentWav(1) }));
    const body = (await verbose.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ duration: '1.0', language: 'de', text: ' lorem', segments: [{ id: 0, start: 0, end: 1, text: ' lorem' }], words: null });
    expect(body).not.toHaveProperty('usage');

    const tr = await client.audio.translations.create({ model: 'whisper', file: await toFile(silentWav(1), 'a.wav') });
    expect(tr).toEqual({ text: ' lorem' });
  });

  it('streams vLLM transcription.chunk chunks, a usage chunk when asked, then [DONE]', async () => {
    const res = await post(
      '/v1/audio/transcriptions',
      form({ model: 'whisper', stream: 'true', stream_include_usage: 'true', prompt: 'two words' }, { name: 'a.wav', data: silentWav(3) }),
    );
    expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    const text = await res.text();
    const data = sseData(text);
    expect(data.at(-1)).toBe('[DONE]');
    expect(data[0]).toMatch(/^\{"id":"transcribe-[0-9a-f]{32}","object":"transcription.chunk","created":\d+,"model":"whisper","choices":\[\{"delta":\{"content":" lorem"\}\}\]\}$/);
    type C = { choices: { delta: { content: string }; finish_reason?: string }[]; usage?: unknown };
    const chunks = sseJson<C>(text);
    expect(chunks.slice(0, 3).map((c) => c.choices[0]!.delta.content).join('')).toBe(' lorem ipsum dolor');
    expect(chunks[2]!.choices[0]).toEqual({ delta: { content: ' dolor' }, finish_reason: 'stop', stop_reason: null });
    expect(chunks[3]).toMatchObject({ choices: [], usage: { prompt_tokens: 6, completion_tokens: 3, total_tokens: 9 } });

    const tr = await post('/v1/audio/translations', form({ stream: 'true' }, { name: 'a.wav', data: silentWav(1) }));
    const trChunks = sseJson<{ id: string; object: string }>(await tr.text());
    expect(trChunks).toHaveLength(1);
    expect(trChunks[0]).toMatchObject({ object: 'translation.chunk', id: expect.stringMatching(/^translate-/) });
  });

  it('rejects a bad WAV, a missing file, JSON bodies and unsupported formats with 400', async () => {
    const bad = await post('/v1/audio/transcriptions', form({ model: 'whisper' }, { name: 'a.wav', data: Buffer.from('garbage') }));
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { type: string; message: string } }).error).toMatchObject({ type: 'BadRequestError', message: expect.stringMatching(/audio/) });

    const noFile = await post('/v1/audio/transcriptions', form({ model: 'whisper' }));
    expect(noFile.status).toBe(400);
    expect(((await noFile.json()) as { error: { message: string } }).error.message).toMatch(/'loc': \('body', 'file'\), 'msg': 'Field required'/);

    const json = await fetch(`${sim.url}/v1/audio/transcriptions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(json.status).toBe(400);

    const srt = await post('/v1/audio/transcriptions', form({ response_format: 'srt' }, { name: 'a.wav', data: silentWav(1) }));
    expect(srt.status).toBe(400);
    expect(((await srt.json()) as { error: { message: string } }).error.message).toBe('Currently only support response_format: `text`, `json` or `verbose_json`');

    const opts = await post('/v1/audio/transcriptions', form({ stream_include_usage: 'true' }, { name: 'a.wav', data: silentWav(1) }));
    expect(opts.status).toBe(400);
    expect(((await opts.json()) as { error: { message: string; param: string } }).error).toMatchObject({
      message: expect.stringContaining('Stream options can only be defined when `stream=True`.'),
      param: 'stream_include_usage',
    });
    const verboseStream = await post('/v1/audio/transcriptions', form({ response_format: 'verbose_json', stream: 'true' }, { name: 'a.wav', data: silentWav(1) }));
    expect(verboseStream.status).toBe(400);

    expect((await post('/v1/audio/transcriptions', form({ model: 'zz' }, { name: 'a.wav', data: silentWav(1) }))).status).toBe(404);
    expect(sim.stats).toMatchObject({ promptTokens: 0, completed: 0, failed: 7 });
  });

  it('takes faults by model, by body content (the form bytes) and mid-stream', async () => {
    sim.faults.add({ kind: 'error-before', status: 429, bodyContains: 'poison.wav' });
    expect((await post('/v1/audio/transcriptions', form({}, { name: 'poison.wav', data: silentWav(1) }))).status).toBe(429);
    expect((await post('/v1/audio/transcriptions', form({}, { name: 'fine.wav', data: silentWav(1) }))).status).toBe(200);
    sim.faults.add({ kind: 'error-before', status: 503, model: 'm2' });
    expect((await post('/v1/audio/transcriptions', form({ model: 'm2' }, { name: 'a.wav', data: silentWav(1) }))).status).toBe(503);
    sim.faults.add({ kind: 'error-after', afterTokens: 1, path: '/v1/audio/transcriptions' });
    const res = await post('/v1/audio/transcriptions', form({ stream: 'true' }, { name: 'a.wav', data: silentWav(3) }));
    const data = sseData(await res.text());
    expect(data).toHaveLength(3);
    expect(JSON.parse(data[1]!)).toEqual({ error: { message: 'Internal Server Error', type: 'InternalServerError', param: null, code: 500 } });
  });
});
