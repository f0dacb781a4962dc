import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { PassThrough, type Readable } from 'node:stream';
import { Busboy } from '@fastify/busboy';
import type { ApiError } from '@spot/contract';
import { AudioFormReader, engineForm, formBoundary, SPOOL_MEMORY_BYTES } from './audio-form';

const B = 'xYz-boundary';
const field = (name: string, value: string) => `--${B}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`;
const fileHead = (name = 'file', filename = 'a.wav') => `--${B}\r\nContent-Disposition: form-data; name="${name}"; filename="${filename}"\r\nContent-Type: audio/wav\r\n\r\n`;
const END = `--${B}--\r\n`;

/** A request the reader reads: bytes written by the test, as the client sends them. */
function fakeRequest(): PassThrough & { complete: boolean } {
  const req = new PassThrough() as PassThrough & { complete: boolean };
  req.complete = false;
  req.on('end', () => {
    req.complete = true;
  });
  return req;
}

function bytesOf(n: number, seed = 1): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

interface Parsed {
  fields: Array<[string, string]>;
  file: { filename: string; type: string; data: Buffer } | null;
}

/** Parses an engine form back (busboy): what the engine would read. */
async function parse(contentType: string, body: Readable): Promise<Parsed> {
  const out: Parsed = { fields: [], file: null };
  const bb = Busboy({ headers: { 'content-type': contentType } });
  const files: Promise<void>[] = [];
  bb.on('field', (name, value) => out.fields.push([name, value]));
  bb.on('file', (_name, stream, filename, _enc, type) => {
    const chunks: Buffer[] = [];
    files.push(
      new Promise((resolve) => {
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => {
          out.file = { filename, type, data: Buffer.concat(chunks) };
          resolve();
        });
      }),
    );
  });
  const done = new Promise<void>((resolve, reject) => {
    bb.on('finish', () => resolve());
    bb.on('error', reject);
  });
  body.pipe(bb);
  await done;
  await Promise.all(files);
  return out;
}

function reader(req: PassThrough, opts: { limit?: number; wholeForm?: boolean } = {}) {
  const events: string[] = [];
  let error: ApiError | null = null;
  const form = new AudioFormReader(
    req as unknown as IncomingMessage,
    { boundary: B, limit: opts.limit ?? 10 * 1024 * 1024, spoolDir: tmpdir(), wholeForm: opts.wholeForm ?? false },
    () => events.push(`ready@${form.spool.size}`),
    (err) => {
      error = err;
      events.push(`error:${err.status}`);
    },
  );
  return { form, events, error: () => error };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('AudioFormReader', () => {
  it('reads the boundary of a multipart content type only', () => {
    expect(formBoundary(`multipart/form-data; boundary=${B}`)).toBe(B);
    expect(formBoundary('multipart/form-data; boundary="a b"')).toBe('a b');
    expect(formBoundary('application/json')).toBeUndefined();
    expect(formBoundary('multipart/form-data')).toBeUndefined();
    expect(formBoundary(undefined)).toBeUndefined();
  });

  it('routes a fields-first form at the file\'s first bytes, streams the file to the engine as it arrives, and replays it', async () => {
    const req = fakeRequest();
    const { form, events } = reader(req);
    const file = bytesOf(SPOOL_MEMORY_BYTES * 3);
    req.write(field('model', 'whisper') + field('stream', 'true') + field('language', 'fr') + field('stream_include_usage', 'false') + fileHead('file', 'my talk (1).wav'));
    req.write(file.subarray(0, 1000));
    await tick();
    // routed at the file part's head, before any of its bytes were needed
    expect(events).toEqual(['ready@0']);
    expect(form).toMatchObject({ model: 'whisper', stream: true, file: { filename: 'my talk (1).wav', contentType: 'audio/wav' } });
    // the engine's body starts now, while most of the file has not arrived
    const first = engineForm(form, 'openai/whisper-large-v3');
    const parsedFirst = parse(first.contentType, first.body);
    req.write(file.subarray(1000));
    req.end(`\r\n${field('temperature', '0.2')}${field('model', 'other')}${END}`);
    await form.ended;
    expect(form.spool.onDisk).toBe(true);
    const a = await parsedFirst;
    expect(a.fields).toEqual([
      ['model', 'openai/whisper-large-v3'],
      ['stream', 'true'],
      ['stream_include_usage', 'true'],
      ['language', 'fr'],
      ['temperature', '0.2'],
    ]);
    expect(a.file!.filename).toBe('my talk (1).wav');
    expect(a.file!.data.equals(file)).toBe(true);
    // a retry: the same form from the first byte, for another engine's model name
    const again = engineForm(form, 'whisper');
    const b = await parse(again.contentType, again.body);
    expect(b.fields[0]).toEqual(['model', 'whisper']);
    expect(createHash('sha256').update(b.file!.data).digest('hex')).toBe(createHash('sha256').update(file).digest('hex'));
    expect(form.spool.toJSON()).toEqual({ bytes: file.length, sha256: createHash('sha256').update(file).digest('hex') });
    form.spool.release();
  });

  it('waits for the whole form when the file comes first (the Node SDK\'s { file, model }) or stream is not given before it', async () => {
    for (const head of [fileHead(), field('model', 'whisper') + fileHead()]) {
      const req = fakeRequest();
      const { form, events } = reader(req);
      const file = bytesOf(SPOOL_MEMORY_BYTES + 10);
      req.write(head);
      req.write(file);
      await tick();
      expect(events).toEqual([]);
      req.end(`\r\n${field('model', 'whisper')}${field('stream', 'false')}${END}`);
      await form.ended;
      await tick();
      expect(events).toEqual([`ready@${file.length}`]);
      expect(form).toMatchObject({ model: 'whisper', stream: false });
      const engine = engineForm(form, 'w');
      const parsed = await parse(engine.contentType, engine.body);
      expect(parsed.file!.data.equals(file)).toBe(true);
      expect(parsed.fields.filter(([n]) => n === 'model')).toEqual([['model', 'w']]);
      form.spool.release();
    }
  });

  it('waits for the whole form while the poison guard needs fingerprints of whole bodies', async () => {
    const req = fakeRequest();
    const { form, events } = reader(req, { wholeForm: true });
    req.write(field('model', 'whisper') + field('stream', 'false') + fileHead() + 'abc');
    await tick();
    expect(events).toEqual([]);
    req.end(`\r\n${END}`);
    await form.ended;
    await tick();
    expect(events).toEqual(['ready@3']);
  });

  it('refuses a form past the limit (413), without a file (400), with two files or a file under another name (400)', async () => {
    const cases: Array<[string, string | Buffer, number, string | null]> = [
      ['too large', Buffer.concat([Buffer.from(field('model', 'w') + fileHead()), bytesOf(5000), Buffer.from(`\r\n${END}`)]), 413, null],
      ['no file', field('model', 'w') + END, 400, 'file'],
      ['two files', `${field('model', 'w')}${fileHead()}a\r\n${fileHead()}b\r\n${END}`, 400, 'file'],
      ['another name', `${field('model', 'w')}${fileHead('audio')}a\r\n${END}`, 400, 'audio'],
      ['malformed', `--${B}\r\nContent-Disposition: form-data; name="model"\r\n\r\nw`, 400, null],
    ];
    for (const [what, body, status, param] of cases) {
      const req = fakeRequest();
      const r = reader(req, { limit: 4096 });
      req.end(body);
      await r.form.ended.catch(() => undefined);
      await tick();
      expect({ what, status: r.error()?.status, param: r.error()?.param ?? null }).toEqual({ what, status, param });
      await expect(r.form.spool.chunks().next()).rejects.toBe(r.error());
    }
  });

  it('fails the spool when the client goes away mid-upload, so no engine takes a partial file for a whole one', async () => {
    const req = fakeRequest();
    const { form, events } = reader(req);
    req.write(field('model', 'w') + field('stream', 'false') + fileHead() + 'partial');
    await tick();
    expect(events).toEqual(['ready@0']);
    const body = engineForm(form, 'w').body;
    const read = (async () => {
      for await (const _ of body) {
        // drain
      }
    })();
    req.destroy(new Error('aborted'));
    await expect(read).rejects.toThrow('aborted');
  });
});
