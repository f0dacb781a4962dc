import { loadConfig } from '@spot/config';
import { PrismaService, UsageEventsRepository } from '@spot/db';
import OpenAI, { toFile } from 'openai';
import { type SimServer, startSim } from '../../apps/vllm-sim/src/sim-server';
import { silentWav } from '../../apps/vllm-sim/src/wav';
import { type GatewayProcess, seedOrgKey, spawnGateway } from '../support/gateway-process';
import { rssBytes } from '../support/raw-http';

// Audio uploads against a real gateway process (the build in dist/) with its default limits: memory, refusals, failover.
const config = loadConfig(process.env);
const MiB = 1024 * 1024;
const WHISPER = 'whisper-up';
const BOUNDARY = 'test-boundary-7d1c';

/** A WAV of `bytes` (or just over): 1 MHz mono, so that 20 MB is 10 seconds (10 words) of audio. */
function wavOf(bytes: number): Buffer {
  return silentWav(Math.ceil((bytes - 44) / 2) / 1_000_000, 1_000_000);
}

/** A multipart body sent as a chunked stream: `fields` (some before the file, per `fileFirst`), then `fileBytes` zeros. */
function chunkedUpload(fields: Record<string, string>, fileBytes: number, fileFirst = false): ReadableStream<Uint8Array> {
  const text = Object.entries(fields)
    .map(([k, v]) => `--${BOUNDARY}\r\nContent-Disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`)
    .join('');
  const fileHead = `--${BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\nContent-Type: audio/wav\r\n\r\n`;
  const pieces: Array<string | number> = fileFirst ? [fileHead, fileBytes, `\r\n${text}--${BOUNDARY}--\r\n`] : [text + fileHead, fileBytes, `\r\n--${BOUNDARY}--\r\n`];
  const piece = new Uint8Array(64 * 1024);
  let i = 0;
  let left = -1;
  return new ReadableStream({
    pull(controller) {
      if (left > 0) {
        const n = Math.min(left, piece.length);
        left -= n;
        controller.enqueue(piece.subarray(0, n));
        return;
      }
      if (i >= pieces.length) return controller.close();
      const p = pieces[i++];
      if (typeof p === 'number') left = p;
      else controller.enqueue(new TextEncoder().encode(p));
    },
  });
}

/**
 * What an upload may add to the gateway's peak RSS: socket reads and spool buffers awaiting V8's
 * external-memory GC come to a few MiB (about 8 on a loaded machine); holding a 20 MB file would be 20.
 */
const HELD_MAX_MIB = 12;

async function measured<T>(gw: GatewayProcess, run: () => Promise<T>): Promise<{ result: T; growthMiB: number }> {
  const before = rssBytes(gw.child.pid!);
  let peak = before;
  const sampler = setInterval(() => {
    peak = Math.max(peak, rssBytes(gw.child.pid!));
  }, 10);
  try {
    const result = await run();
    return { result, growthMiB: (Math.max(peak, rssBytes(gw.child.pid!)) - before) / MiB };
  } finally {
    clearInterval(sampler);
  }
}

describe('gateway: audio uploads (process)', () => {
  const prisma = new PrismaService(config);
  const usage = new UsageEventsRepository(prisma);
  let spot: SimServer;
  let onDemand: SimServer;
  let gw: GatewayProcess;
  let key: string;
  let client: OpenAI;

  const usageRow = async (requestId: string) => {
    const deadline = Date.now() + 5000;
    for (;;) {
      const row = await usage.findByRequestId(requestId);
      if (row || Date.now() > deadline) return row;
      await new Promise((r) => setTimeout(r, 25));
    }
  };
  const upload = (body: ReadableStream<Uint8Array> | FormData, path = '/v1/audio/transcriptions') =>
    fetch(`${gw.url}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, ...(body instanceof FormData ? {} : { 'content-type': `multipart/form-data; boundary=${BOUNDARY}` }) },
      body,
      duplex: 'half',
    } as RequestInit);

  beforeAll(async () => {
    spot = await startSim({ models: [WHISPER] });
    onDemand = await startSim({ models: [WHISPER] });
    key = (await seedOrgKey(prisma, { slugPrefix: 'audio' })).key;
    gw = await spawnGateway({
      tiersYaml: `tiers:
  - name: spot
    kind: spot
    endpoints: [${spot.url}]
    models:
      - { id: ${WHISPER}, apis: [audio], price: { input_per_mtok: 0.1, output_per_mtok: 0.2, audio_per_minute: 0.006 } }
  - name: od
    kind: on-demand
    endpoints: [${onDemand.url}]
    models:
      - { id: ${WHISPER}, apis: [audio], price: { input_per_mtok: 0.1, output_per_mtok: 0.2, audio_per_minute: 0.012 } }
preference:
  ${WHISPER}: [spot, od]
`,
      env: { BREAKER_FAILURES: '1000' },
    });
    client = new OpenAI({ baseURL: gw.baseURL, apiKey: key, maxRetries: 0 });
    // warm: the first request's code paths and pools; and one large upload, whose garbage (the socket's reads, the
    // spool's) raises the allocator's high-water mark once, by V8's external-memory GC threshold (~32 MiB here),
    // whatever the file's size: later uploads reuse that memory (measured: +32 MiB on the first 20 MB upload, then
    // +0.1 MiB on each of the next three)
    await client.audio.transcriptions.create({ file: await toFile(silentWav(1), 'warm.wav'), model: WHISPER });
    await client.audio.transcriptions.create({ file: await toFile(wavOf(20 * MiB), 'warm.wav'), model: WHISPER });
  }, 60_000);
  afterAll(async () => {
    await gw?.stop();
    await spot?.close();
    await onDemand?.close();
    await prisma.$disconnect();
  });
  beforeEach(() => {
    spot.reset();
    onDemand.reset();
  });

  it('transcribes a 20 MB upload (the SDK, file first; and fields first, streamed through) without holding it in memory', async () => {
    const wav = wavOf(20 * MiB);
    const sdk = await measured(gw, async () => client.audio.transcriptions.create({ file: await toFile(wav, 'twenty.wav'), model: WHISPER }).withResponse());
    expect(sdk.result.data.text.trim().split(' ')).toHaveLength(11);
    expect(spot.received.at(-1)!.body).toMatchObject({ file: { filename: 'twenty.wav', bytes: wav.length } });
    expect(await usageRow(sdk.result.response.headers.get('x-request-id')!)).toMatchObject({ audioSeconds: 11, tier: 'spot' });
    const form = new FormData();
    form.append('model', WHISPER);
    form.append('stream', 'false');
    form.append('file', new Blob([wav]), 'streamed.wav');
    const through = await measured(gw, async () => {
      const res = await upload(form);
      return { status: res.status, body: (await res.json()) as { usage: { seconds: number } } };
    });
    expect(through.result).toMatchObject({ status: 200, body: { usage: { type: 'duration', seconds: 11 } } });
    expect(spot.received.at(-1)!.body).toMatchObject({ file: { filename: 'streamed.wav', bytes: wav.length } });
    // 20 MB went through each time; a few MiB of buffers is all it cost
    expect(sdk.growthMiB).toBeLessThan(HELD_MAX_MIB);
    expect(through.growthMiB).toBeLessThan(HELD_MAX_MIB);
    // and it does not add up: three more, 60 MB in all
    const more = await measured(gw, async () => {
      for (let i = 0; i < 3; i++) await client.audio.transcriptions.create({ file: await toFile(wav, `more-${i}.wav`), model: WHISPER });
    });
    expect(more.growthMiB).toBeLessThan(HELD_MAX_MIB);
  }, 60_000);

  it('refuses a 30 MB upload with 413 in OpenAI\'s envelope, by its content-length or as it streams, without holding it', async () => {
    const declared = await measured(gw, async () => {
      const form = new FormData();
      form.append('model', WHISPER);
      form.append('file', new Blob([Buffer.alloc(30 * MiB)]), 'huge.wav');
      const res = await upload(form);
      return { status: res.status, body: (await res.json()) as { error: { code: string; type: string } } };
    });
    expect(declared.result).toEqual({ status: 413, body: { error: expect.objectContaining({ code: 'request_too_large', type: 'invalid_request_error' }) } });
    for (const fileFirst of [true, false]) {
      const streamed = await measured(gw, async () => {
        const res = await upload(chunkedUpload({ model: WHISPER, stream: 'false' }, 30 * MiB, fileFirst));
        return { status: res.status, body: (await res.json()) as { error: { code: string } } };
      });
      expect({ fileFirst, ...streamed.result }).toEqual({ fileFirst, status: 413, body: { error: expect.objectContaining({ code: 'request_too_large' }) } });
      expect(streamed.growthMiB).toBeLessThan(HELD_MAX_MIB);
    }
    expect(declared.growthMiB).toBeLessThan(HELD_MAX_MIB);
    // nothing of a refused upload was transcribed (a streamed one may have reached the engine: it got no clean end)
    expect(spot.stats.completed + onDemand.stats.completed).toBe(0);
  }, 60_000);

  it('fails over before the first byte: the upload is replayed from its first byte to the next tier', async () => {
    const wav = wavOf(2 * MiB);
    spot.faults.add({ kind: 'error-before', status: 503, count: 1 });
    const { data, response } = await client.audio.transcriptions.create({ file: await toFile(wav, 'retry.wav'), model: WHISPER }).withResponse();
    expect(data.text.trim().split(' ')).toHaveLength(2);
    expect(spot.received).toHaveLength(1);
    expect(onDemand.received.at(-1)!.body).toMatchObject({ file: { filename: 'retry.wav', bytes: wav.length } });
    // billed once, at the tier that served it
    expect(await usageRow(response.headers.get('x-request-id')!)).toMatchObject({ tier: 'od', audioSeconds: 2, costNanos: 400_000n });

    // fields first (sent while it streams in), the spot engine dropping the connection once it has the body
    spot.faults.add({ kind: 'drop', afterTokens: 0, count: 1 });
    const form = new FormData();
    form.append('model', WHISPER);
    form.append('stream', 'true');
    form.append('file', new Blob([wav]), 'dropped.wav');
    const res = await upload(form);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toContain('"type":"transcript.text.done"');
    expect(spot.received).toHaveLength(2);
    expect(onDemand.received.at(-1)!.body).toMatchObject({ stream: 'true', file: { filename: 'dropped.wav', bytes: wav.length } });
  }, 60_000);
});
