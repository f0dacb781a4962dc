import { costNanos } from '@spot/tiers';
import OpenAI, { toFile } from 'openai';
import { silentWav } from '../../apps/vllm-sim/src/wav';
import { type GatewayStack, startGatewayStack, tiersYaml } from '../support/gateway-stack';

// Speech-to-text through the gateway with the official SDK: multipart uploads streamed to vllm-sim, metered and priced.
const WHISPER = 'whisper-test';
const PRICE = { input_per_mtok: 0.5, output_per_mtok: 1, audio_per_minute: 0.006 };
const NANOS_PER_SECOND = 100_000; // 0.006 $/min

function audioTiers(simUrl: string): string {
  return `${tiersYaml(simUrl)}      - id: ${WHISPER}
        apis: [audio]
        price: { input_per_mtok: ${PRICE.input_per_mtok}, output_per_mtok: ${PRICE.output_per_mtok}, audio_per_minute: ${PRICE.audio_per_minute} }
      - id: chat-only
        upstream: meta-llama/Llama-3.1-8B-Instruct
        apis: [chat]
        price: { input_per_mtok: 0.05, output_per_mtok: 0.10 }
`;
}

type Envelope = { error: { message: string; type: string; param: string | null; code: string | null } };

/** A multipart body in the given part order, as browsers and hand-written clients send it. */
function form(parts: Array<[string, string] | ['file', Buffer, string]>): FormData {
  const f = new FormData();
  for (const p of parts) {
    if (p[0] === 'file' && Buffer.isBuffer(p[1])) f.append('file', new Blob([p[1]], { type: 'audio/wav' }), p[2] as string);
    else f.append(p[0], p[1] as string);
  }
  return f;
}

describe('gateway: audio transcriptions and translations', () => {
  let s: GatewayStack;
  const post = (path: string, body: FormData | string, headers: Record<string, string> = {}, key: string | null = s.key) =>
    fetch(`${s.url}${path}`, { method: 'POST', headers: { ...(key === null ? {} : { authorization: `Bearer ${key}` }), ...headers }, body });

  beforeAll(async () => {
    s = await startGatewayStack({ GATEWAY_AUDIO_BODY_LIMIT: String(4 * 1024 * 1024) }, { extraModels: [WHISPER] }, audioTiers);
  });
  afterAll(async () => {
    await s?.close();
  });
  beforeEach(() => s.sim.reset());

  it('transcribes a WAV file with the SDK ({ file, model }: the file first), billed by the seconds the engine reported', async () => {
    const { data: res, response } = await s.client.audio.transcriptions
      .create({ file: await toFile(silentWav(2.5), 'speech.wav', { type: 'audio/wav' }), model: WHISPER })
      .withResponse();
    expect(res.text).toBe(' lorem ipsum dolor');
    const usage = (res as unknown as { usage: { type: string; seconds: number } }).usage;
    expect(usage).toEqual({ type: 'duration', seconds: 3 });
    // the engine got the whole file, byte for byte, with its name
    expect(s.sim.received.at(-1)).toMatchObject({ path: '/v1/audio/transcriptions', body: { model: WHISPER, file: { filename: 'speech.wav', bytes: 44 + 80_000 } } });
    const row = await s.usageRow(response.headers.get('x-request-id')!);
    expect(row).toMatchObject({ model: WHISPER, status: 200, promptTokens: 0, completionTokens: 0, audioSeconds: usage.seconds, estimated: false });
    expect(Number(row!.costNanos)).toBe(usage.seconds * NANOS_PER_SECOND);
    expect(Number(row!.costNanos)).toBe(costNanos(PRICE, { promptTokens: 0, completionTokens: 0, cachedTokens: 0, audioSeconds: 3 }));
  });

  it('streams a transcription as OpenAI transcript events, the done event carrying the usage that is billed', async () => {
    const stream = await s.client.audio.transcriptions.create({ file: await toFile(silentWav(3), 'a.wav'), model: WHISPER, stream: true, prompt: 'two words' });
    const events: Array<{ type: string; delta?: string; text?: string; usage?: { type: string; input_tokens: number; output_tokens: number; total_tokens: number } }> = [];
    for await (const ev of stream) events.push(ev as (typeof events)[number]);
    expect(events.map((e) => e.type)).toEqual(['transcript.text.delta', 'transcript.text.delta', 'transcript.text.delta', 'transcript.text.done']);
    expect(events.slice(0, 3).map((e) => e.delta).join('')).toBe(' lorem ipsum dolor');
    const done = events[3];
    expect(done).toEqual({ type: 'transcript.text.done', text: ' lorem ipsum dolor', usage: { type: 'tokens', input_tokens: 6, output_tokens: 3, total_tokens: 9 } });
    // the gateway asked the engine for its usage chunk
    expect(s.sim.received.at(-1)!.body).toMatchObject({ stream: 'true', stream_include_usage: 'true' });
    const row = (await s.usageRow(s.sim.received.at(-1)!.headers['x-request-id'] as string))!;
    expect(row).toMatchObject({ promptTokens: 6, completionTokens: 3, audioSeconds: 0, estimated: false, status: 200 });
    expect(Number(row.costNanos)).toBe(costNanos(PRICE, { promptTokens: 6, completionTokens: 3, cachedTokens: 0 }));
  });

  it('streams a fields-first upload to the engine before it has all arrived, and bills it the same', async () => {
    // model and stream before the file: the gateway routes at the file's first byte and the engine reads it as it comes
    const wav = silentWav(20); // 640 KB: past the spool's memory part, so the rest streams through its temp file
    const res = await post('/v1/audio/transcriptions', form([['model', WHISPER], ['stream', 'false'], ['language', 'de'], ['file', wav, 'long.wav'], ['temperature', '0']]));
    expect(res.status).toBe(200);
    const body = (await res.json()) as { text: string; usage: { seconds: number } };
    expect(body.usage).toEqual({ type: 'duration', seconds: 20 });
    expect(body.text.split(' ').length - 1).toBe(20);
    expect(s.sim.received.at(-1)!.body).toMatchObject({ model: WHISPER, language: 'de', temperature: '0', file: { filename: 'long.wav', bytes: wav.length } });
    const row = await s.usageRow(res.headers.get('x-request-id')!);
    expect(row).toMatchObject({ audioSeconds: 20, estimated: false });
    expect(Number(row!.costNanos)).toBe(20 * NANOS_PER_SECOND);
  });

  it('translates with the SDK; vLLM reports no usage for it, so the WAV header\'s duration is billed, flagged estimated', async () => {
    const { data, response } = await s.client.audio.translations.create({ file: await toFile(silentWav(4.2), 'fr.wav'), model: WHISPER }).withResponse();
    expect(data).toEqual({ text: ' lorem ipsum dolor sit amet' });
    expect(s.sim.received.at(-1)!.path).toBe('/v1/audio/translations');
    const row = await s.usageRow(response.headers.get('x-request-id')!);
    expect(row).toMatchObject({ audioSeconds: 5, estimated: true, status: 200 });
    expect(Number(row!.costNanos)).toBe(5 * NANOS_PER_SECOND);
  });

  it('passes the response formats through as the engine answers them, and meters a verbose answer by its duration', async () => {
    // vLLM answers `text` with its JSON object: relayed as it is
    const text = await post('/v1/audio/transcriptions', form([['file', silentWav(2), 'a.wav'], ['model', WHISPER], ['response_format', 'text']]));
    expect(text.headers.get('content-type')).toBe('application/json');
    expect(await text.json()).toEqual({ text: ' lorem ipsum', usage: { type: 'duration', seconds: 2 } });
    const verbose = await post('/v1/audio/transcriptions', form([['file', silentWav(1.5), 'a.wav'], ['model', WHISPER], ['response_format', 'verbose_json'], ['timestamp_granularities[]', 'segment']]));
    const v = (await verbose.json()) as { duration: string; segments: unknown[] };
    expect(v.duration).toBe('1.5');
    expect(s.sim.received.at(-1)!.body).toMatchObject({ 'timestamp_granularities[]': 'segment' });
    expect(await s.usageRow(verbose.headers.get('x-request-id')!)).toMatchObject({ audioSeconds: 2, estimated: false });
    // the engine's 400 (vLLM serves neither srt nor vtt), in OpenAI's envelope
    const srt = await post('/v1/audio/transcriptions', form([['file', silentWav(1), 'a.wav'], ['model', WHISPER], ['response_format', 'srt']]));
    expect(srt.status).toBe(400);
    expect(((await srt.json()) as Envelope).error).toMatchObject({ type: 'invalid_request_error', message: expect.stringContaining('response_format') });
  });

  it('answers bad requests in OpenAI\'s envelope before any engine sees them', async () => {
    const wav = silentWav(1);
    const cases: Array<[string, Promise<Response>, number, Partial<Envelope['error']>]> = [
      ['no key', post('/v1/audio/transcriptions', form([['model', WHISPER], ['file', wav, 'a.wav']]), {}, null), 401, { code: 'invalid_api_key' }],
      ['no file', post('/v1/audio/transcriptions', form([['model', WHISPER]])), 400, { param: 'file', code: 'missing_required_parameter' }],
      ['no model', post('/v1/audio/transcriptions', form([['file', wav, 'a.wav']])), 400, { param: 'model', code: 'missing_required_parameter' }],
      ['unknown model', post('/v1/audio/translations', form([['file', wav, 'a.wav'], ['model', 'no-such-model']])), 404, { code: 'model_not_found' }],
      ['a chat-only model', post('/v1/audio/transcriptions', form([['model', 'chat-only'], ['stream', 'false'], ['file', wav, 'a.wav']])), 404, { code: 'model_not_found' }],
      ['JSON', post('/v1/audio/transcriptions', JSON.stringify({ model: WHISPER }), { 'content-type': 'application/json' }), 415, { code: 'unsupported_media_type' }],
      ['two files', post('/v1/audio/transcriptions', form([['model', WHISPER], ['file', wav, 'a.wav'], ['file', wav, 'b.wav']])), 400, { param: 'file' }],
      ['too large', post('/v1/audio/transcriptions', form([['model', WHISPER], ['file', Buffer.alloc(5 * 1024 * 1024), 'big.wav']])), 413, { code: 'request_too_large' }],
    ];
    for (const [what, pending, status, error] of cases) {
      const res = await pending;
      expect({ what, status: res.status }).toEqual({ what, status });
      expect({ what, error: ((await res.json()) as Envelope).error }).toEqual({ what, error: expect.objectContaining(error) });
    }
    expect(s.sim.received).toHaveLength(0);
  });

  it('keeps a key to its allowed models and refuses past its limits, as for chat', async () => {
    const other = await s.newKey({ models: ['llama-test'] });
    const denied = await new OpenAI({ baseURL: s.baseURL, apiKey: other.key, maxRetries: 0 }).audio.transcriptions
      .create({ file: await toFile(silentWav(1), 'a.wav'), model: WHISPER })
      .catch((e: unknown) => e);
    expect(denied).toBeInstanceOf(OpenAI.NotFoundError);
    expect((denied as InstanceType<typeof OpenAI.NotFoundError>).code).toBe('model_not_found');
    const limited = await s.newKey({ rpmLimit: 1 });
    const client = new OpenAI({ baseURL: s.baseURL, apiKey: limited.key, maxRetries: 0 });
    await client.audio.transcriptions.create({ file: await toFile(silentWav(1), 'a.wav'), model: WHISPER });
    const second = await client.audio.transcriptions.create({ file: await toFile(silentWav(1), 'a.wav'), model: WHISPER }).catch((e: unknown) => e);
    expect(second).toBeInstanceOf(OpenAI.RateLimitError);
    // GET /v1/models lists the audio model beside the others
    const models = await s.client.models.list();
    expect(models.data.map((m) => m.id)).toContain(WHISPER);
  });
});
