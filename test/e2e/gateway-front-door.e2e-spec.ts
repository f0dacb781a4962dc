import { connect, type Socket } from 'node:net';
import { loadConfig } from '@spot/config';
import { PrismaService } from '@spot/db';
import { type SimServer, startSim } from '../../apps/vllm-sim/src/sim-server';
import { type GatewayProcess, seedOrgKey, spawnGateway } from '../support/gateway-process';
import { CHAT_MODEL, CHAT_UPSTREAM, EMBED_MODEL, OTHER_MODEL, tiersYaml } from '../support/gateway-stack';
import { envelopeOf, rawRequest, rssBytes } from '../support/raw-http';

// Issue 9, the gateway's front door, against real gateway processes (the build in dist/), Postgres and Redis.
const config = loadConfig(process.env);
const MiB = 1024 * 1024;
const messages = [{ role: 'user', content: 'hello' }];
const UNKNOWN_KEY = `sk-spot-AAAAAAAAAAAA-${'B'.repeat(40)}`;

function post(path: string, opts: { key?: string | null; contentLength: number; extra?: string } = { contentLength: 0 }): string {
  const auth = opts.key === null || opts.key === undefined ? '' : `authorization: Bearer ${opts.key}\r\n`;
  return `POST ${path} HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n${auth}content-length: ${opts.contentLength}\r\n${opts.extra ?? ''}\r\n`;
}

async function metric(gw: GatewayProcess, name: string): Promise<number> {
  const text = await (await fetch(`${gw.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  if (line === undefined) throw new Error(`no metric ${name}`);
  return Number(line.split(' ')[1]);
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function chat(gw: GatewayProcess, key: string, path = '/v1/chat/completions'): Promise<Response> {
  return fetch(`${gw.url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: CHAT_MODEL, messages }),
  });
}

/** A body of `total` bytes sent as a chunked stream (no content-length). */
function chunkedBody(total: number, piece = 64 * 1024): ReadableStream<Uint8Array> {
  let sent = 0;
  return new ReadableStream({
    pull(controller) {
      if (sent >= total) return controller.close();
      const n = Math.min(piece, total - sent);
      sent += n;
      controller.enqueue(new Uint8Array(n).fill(0x20));
    },
  });
}

describe('gateway front door', () => {
  const prisma = new PrismaService(config);
  let sim: SimServer;
  let key: string;

  beforeAll(async () => {
    sim = await startSim({ models: [CHAT_UPSTREAM, OTHER_MODEL, EMBED_MODEL] });
    key = (await seedOrgKey(prisma, { slugPrefix: 'fd' })).key;
  });
  afterAll(async () => {
    await sim?.close();
    await prisma.$disconnect();
  });

  describe('with the default limits', () => {
    let gw: GatewayProcess;
    beforeAll(async () => {
      // a short request timeout: it also ends the drain of the early answers below
      gw = await spawnGateway({ tiersYaml: tiersYaml(sim.url), env: { GATEWAY_BODY_TIMEOUT_MS: '3000' } });
    });
    afterAll(async () => {
      await gw?.stop();
    });

    it('answers a missing, malformed or unknown key with 401 at once, without waiting for the body, then closes', async () => {
      for (const k of [null, 'sk-proj-123', UNKNOWN_KEY]) {
        // 8 MB announced, 1 KB sent: the answer must come from the headers alone
        const out = await rawRequest(gw.port, { head: post('/v1/chat/completions', { key: k, contentLength: 8_000_000 }), bodyBytes: 1024, stopOnResponse: true, timeoutMs: 15_000 });
        expect(out.response?.status).toBe(401);
        expect(envelopeOf(out.response!.body).code).toBe('invalid_api_key');
        expect(out.response!.headers.connection).toBe('close');
        expect(out.response!.headers['x-request-id']).toMatch(/^req_[0-9a-f]{32}$/);
        // the rest of the body never came: the gateway closed at the request timeout, writing no 408 over the 401
        expect(out.closed).toBe(true);
        expect(out.rest).toBe('');
      }
    });

    it('keeps its memory under a flood of unauthenticated 4 MB uploads, answering each, while serving keyed traffic', async () => {
      const N = 120;
      // valid JSON of 4 MB: nothing but the key is wrong
      const start = `{"model":"${CHAT_MODEL}","messages":[{"role":"user","content":"`;
      const tail = '"}]}';
      const filler = 4 * MiB - start.length - tail.length;
      const heads = [
        post('/v1/chat/completions', { key: null, contentLength: 4 * MiB }),
        post('/v1/chat/completions', { key: UNKNOWN_KEY, contentLength: 4 * MiB }),
        post('/v1/chat/completions', { key: 'sk-proj-123', contentLength: 4 * MiB }),
        post('/v1/nope', { key: null, contentLength: 4 * MiB }),
      ].map((h) => h + start);
      for (let i = 0; i < 3; i++) {
        const res = await chat(gw, key);
        await res.arrayBuffer();
        expect(res.status).toBe(200);
      }
      const before = rssBytes(gw.child.pid!);
      let peak = before;
      const sampler = setInterval(() => {
        peak = Math.max(peak, rssBytes(gw.child.pid!));
      }, 25);
      const floods = Array.from({ length: N }, (_, i) => rawRequest(gw.port, { head: heads[i % heads.length], bodyBytes: filler, tail, timeoutMs: 25_000 }));
      const keyed = Array.from({ length: 20 }, (_, i) =>
        new Promise((r) => setTimeout(r, i * 50)).then(async () => {
          const res = await chat(gw, key);
          await res.arrayBuffer();
          return res.status;
        }),
      );
      const health = Array.from({ length: 10 }, (_, i) => new Promise((r) => setTimeout(r, i * 100)).then(async () => (await fetch(`${gw.url}/healthz`)).status));
      const outcomes = await Promise.all(floods);
      clearInterval(sampler);
      const statuses = outcomes.map((o, i) => `${i % heads.length}:${o.response?.status ?? 'none'}`);
      expect(statuses).toEqual(Array.from({ length: N }, (_, i) => `${i % heads.length}:${i % heads.length === 3 ? 404 : 401}`));
      for (const o of outcomes) expect(() => envelopeOf(o.response!.body)).not.toThrow();
      expect(await Promise.all(keyed)).toEqual(Array(20).fill(200));
      expect(await Promise.all(health)).toEqual(Array(10).fill(200));
      // 480 MB was uploaded; none of it was held
      expect((peak - before) / MiB).toBeLessThan(100);
      expect(await metric(gw, 'gateway_body_bytes_in_flight')).toBe(0);
    }, 60_000);

    it('hands a proxied URL the fast path does not match (percent-escaped) over before its body is read', async () => {
      const ok = await chat(gw, key, '/v1/chat/complet%69ons');
      expect(ok.status).toBe(200);
      expect(((await ok.json()) as { object: string }).object).toBe('chat.completion');
      const out = await rawRequest(gw.port, { head: post('/v1/chat/complet%69ons', { key: null, contentLength: 8_000_000 }), bodyBytes: 1024, stopOnResponse: true, resolveOnResponse: true, timeoutMs: 10_000 });
      expect(out.response?.status).toBe(401);
      expect(out.response!.headers.connection).toBe('close');
    });

    it('answers JSON nested 10^4 deep in any field with 400, logging no stack, and leaks no request', async () => {
      const deep = '['.repeat(10_000) + ']'.repeat(10_000);
      const cases: Array<[string, string]> = [
        ['/v1/chat/completions', `{"model":"${CHAT_MODEL}","messages":[{"role":"user","content":"hi"}],"metadata":${deep}}`],
        ['/v1/chat/completions', `{"model":"${CHAT_MODEL}","messages":[{"role":"user","content":${deep}}],"stream":true}`],
        ['/v1/completions', `{"model":"${OTHER_MODEL}","prompt":${deep}}`],
        ['/v1/embeddings', `{"model":"${EMBED_MODEL}","input":${deep}}`],
      ];
      for (const [path, body] of cases) {
        const res = await fetch(`${gw.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body });
        expect(res.status).toBe(400);
        expect(envelopeOf(await res.text())).toMatchObject({ type: 'invalid_request_error', code: 'invalid_json' });
      }
      expect((await chat(gw, key)).status).toBe(200);
      await until('no request in flight', async () => (await metric(gw, 'gateway_inflight_requests')) === 0);
      expect(gw.stderr()).not.toMatch(/RangeError|Maximum call stack/);
    });

    describe('errors below the app, in the OpenAI envelope with connection: close', () => {
      const huge = 'a'.repeat(20_000);
      const cases: Array<[string, string, number]> = [
        ['a bad request line', 'GARBAGE\r\n\r\n', 400],
        ['content-length with transfer-encoding (smuggling)', 'POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n', 400],
        ['a bare LF', 'GET /healthz HTTP/1.1\nhost: gw\n\n', 400],
        ['a NUL in a header', 'GET /healthz HTTP/1.1\r\nhost: gw\r\nx-test: a\u0000b\r\n\r\n', 400],
        ['headers too large', `GET /healthz HTTP/1.1\r\nhost: gw\r\nx-big: ${huge}\r\n\r\n`, 431],
        ['a malformed percent-escape in the URL', 'GET /v1/models/%zz HTTP/1.1\r\nhost: gw\r\n\r\n', 400],
        ['an HTTP/1.1 request without Host', 'GET /healthz HTTP/1.1\r\n\r\n', 400],
        ['an expectation other than 100-continue', 'GET /healthz HTTP/1.1\r\nhost: gw\r\nexpect: 200-ok\r\n\r\n', 417],
        ['a malformed percent-escape in a POST URL, body unread', `POST /v1/chat/completions%zz HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\ncontent-length: 4000000\r\n\r\n`, 400],
      ];
      it.each(cases)('%s', async (_name, head, status) => {
        const out = await rawRequest(gw.port, { head, timeoutMs: 10_000 });
        expect(out.response?.status).toBe(status);
        expect(out.response!.headers['content-type']).toBe('application/json');
        expect(out.response!.headers.connection).toBe('close');
        expect(envelopeOf(out.response!.body).type).toBe('invalid_request_error');
        expect(out.closed).toBe(true);
      });
    });
  });

  describe('with tight timeouts and a small in-flight budget', () => {
    let gw: GatewayProcess;
    beforeAll(async () => {
      gw = await spawnGateway({
        tiersYaml: tiersYaml(sim.url),
        env: { GATEWAY_BODY_TIMEOUT_MS: '1500', GATEWAY_HEADERS_TIMEOUT_MS: '600', GATEWAY_KEEP_ALIVE_TIMEOUT_MS: '7000', GATEWAY_MAX_BODY_BYTES_IN_FLIGHT: '1000000' },
      });
    });
    afterAll(async () => {
      await gw?.stop();
    });

    it('answers a body that does not arrive in time with 408 in the envelope, and closes', async () => {
      const out = await rawRequest(gw.port, { head: post('/v1/chat/completions', { key, contentLength: 1000 }) + '{"model":', timeoutMs: 15_000 });
      expect(out.response?.status).toBe(408);
      expect(envelopeOf(out.response!.body)).toMatchObject({ type: 'invalid_request_error', code: 'request_timeout' });
      expect(out.response!.headers.connection).toBe('close');
      expect(out.closed).toBe(true);
      await until('the timed-out body released', async () => (await metric(gw, 'gateway_body_bytes_in_flight')) === 0);
    });

    it('answers headers that do not arrive in time with 408 in the envelope, and closes', async () => {
      const out = await rawRequest(gw.port, { head: 'POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\n', timeoutMs: 15_000 });
      expect(out.response?.status).toBe(408);
      expect(envelopeOf(out.response!.body).code).toBe('request_timeout');
      expect(out.closed).toBe(true);
    });

    it('tells clients the keep-alive bound it keeps', async () => {
      const res = await fetch(`${gw.url}/healthz`);
      expect(res.headers.get('keep-alive')).toBe('timeout=7');
    });

    it('refuses bodies past the in-flight budget with 503 server_overloaded and retry-after, then serves once it frees', async () => {
      // one authenticated upload holds 800 kB of the 1 MB budget
      const holder: Socket = connect(gw.port, '127.0.0.1');
      await new Promise((r) => holder.once('connect', r));
      holder.write(post('/v1/chat/completions', { key, contentLength: 800_000 }) + ' '.repeat(100_000));
      await until('the reservation', async () => (await metric(gw, 'gateway_body_bytes_in_flight')) === 800_000);

      // a declared body that does not fit: refused on its headers
      const declared = await rawRequest(gw.port, { head: post('/v1/chat/completions', { key, contentLength: 300_000 }), stopOnResponse: true, bodyBytes: 300_000, timeoutMs: 10_000 });
      expect(declared.response?.status).toBe(503);
      expect(envelopeOf(declared.response!.body)).toMatchObject({ type: 'server_error', code: 'server_overloaded' });
      expect(declared.response!.headers['retry-after']).toBe('1');
      // a chunked body: refused once its bytes pass the budget, and the client, still uploading, gets the answer
      const chunked = await fetch(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: chunkedBody(400_000),
        duplex: 'half',
      } as RequestInit);
      expect(chunked.status).toBe(503);
      expect(envelopeOf(await chunked.text()).code).toBe('server_overloaded');
      // unauthenticated uploads never reserve anything
      const unauth = await rawRequest(gw.port, { head: post('/v1/chat/completions', { key: null, contentLength: 300_000 }), resolveOnResponse: true, timeoutMs: 10_000 });
      expect(unauth.response?.status).toBe(401);

      // the holder gives up: its reservation is released and the same request is served
      holder.destroy();
      await until('the released budget', async () => (await metric(gw, 'gateway_body_bytes_in_flight')) === 0);
      const body = JSON.stringify({ model: CHAT_MODEL, messages: [{ role: 'user', content: 'x'.repeat(300_000) }] });
      const served = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body });
      expect(served.status).toBe(200);
    });
  });

  describe('answers sent while the client is still uploading', () => {
    let gw: GatewayProcess;
    beforeAll(async () => {
      gw = await spawnGateway({ tiersYaml: tiersYaml(sim.url), env: { GATEWAY_BODY_LIMIT: '3000000' } });
    });
    afterAll(async () => {
      await gw?.stop();
    });

    /** Ten clients at once, three rounds (a lost answer is a race: more rounds, more chances to see one). */
    async function tenAtOnce(init: () => RequestInit): Promise<string[]> {
      const got: string[] = [];
      for (let round = 0; round < 3; round++) {
        const answers = await Promise.all(
          Array.from({ length: 10 }, async () => {
            try {
              const res = await fetch(`${gw.url}/v1/chat/completions`, init());
              return `${res.status} ${envelopeOf(await res.text()).code}`;
            } catch (err) {
              return `lost: ${String((err as Error).cause ?? err)}`;
            }
          }),
        );
        got.push(...answers);
      }
      return got;
    }

    it('a 413 on a declared length reaches every client, ten at a time uploading 5.5 MB', async () => {
      const body = Buffer.alloc(5_500_000, 0x20);
      const got = await tenAtOnce(() => ({ method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body }));
      expect(got).toEqual(Array(30).fill('413 request_too_large'));
    });

    it('a 413 on a chunked body past the limit reaches every client, ten at a time still uploading', async () => {
      const got = await tenAtOnce(
        () => ({ method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: chunkedBody(5_500_000), duplex: 'half' }) as RequestInit,
      );
      expect(got).toEqual(Array(30).fill('413 request_too_large'));
    });

    it('a 401 reaches every client, ten at a time uploading 5.5 MB without a valid key', async () => {
      const body = Buffer.alloc(5_500_000, 0x20);
      const got = await tenAtOnce(() => ({ method: 'POST', headers: { authorization: `Bearer ${UNKNOWN_KEY}`, 'content-type': 'application/json' }, body }));
      expect(got).toEqual(Array(30).fill('401 invalid_api_key'));
    });

    it('a connection over the drain bound is cut rather than read forever', async () => {
      // 413 on the headers, then far more than twice the limit: the gateway stops reading and closes, with a
      // FIN first (a reset at once would make a client still writing lose the 413 it had not yet read)
      const out = await rawRequest(gw.port, { head: post('/v1/chat/completions', { key, contentLength: 50_000_000 }), bodyBytes: 50_000_000, timeoutMs: 20_000 });
      expect(out.response?.status).toBe(413);
      expect(out.ended).toBe(true);
      expect(out.closed).toBe(true);
      expect(out.sent).toBeLessThan(50_000_000);
    });
  });
});
