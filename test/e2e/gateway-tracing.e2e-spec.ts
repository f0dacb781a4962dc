import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadConfig } from '@spot/config';
import { ApiKeysRepository, OrgsRepository, PrismaService } from '@spot/db';
import { mintApiKey } from '@spot/keys';
import OpenAI from 'openai';
import { type SimServer, startSim } from '../../apps/vllm-sim/src/sim-server';
import { type CollectedSpan, type FakeOtlpCollector, SPAN_KIND, STATUS_CODE, startFakeOtlpCollector } from '../fakes/otlp/fake-otlp-collector';
import { type GatewayProcess, spawnGateway } from '../support/gateway-process';

const MODEL = 'llama-traced';
const UPSTREAM = 'meta-llama/Llama-3.1-8B-Instruct';
const PROBE = resolve(__dirname, '../support/module-probe.cjs');
const messages = [{ role: 'user' as const, content: 'Say something about GPUs.' }];

/** Two tiers, the first one's engine failing once where a test asks: the retry's attempt is traced too. */
function tiers(flaky: SimServer, steady: SimServer): string {
  return `tiers:
  - name: flaky-spot
    kind: spot
    endpoints: [${flaky.url}]
    models:
      - { id: ${MODEL}, upstream: ${UPSTREAM}, price: { input_per_mtok: 0.05, output_per_mtok: 0.10 } }
  - name: steady
    kind: on-demand
    endpoints: [${steady.url}]
    models:
      - { id: ${MODEL}, upstream: ${UPSTREAM}, price: { input_per_mtok: 0.20, output_per_mtok: 0.40 } }
`;
}

function loadedModules(file: string): string[] {
  return JSON.parse(readFileSync(file, 'utf8')) as string[];
}

function traceparentOf(sim: SimServer): string | undefined {
  const chat = sim.received.filter((r) => r.path === '/v1/chat/completions');
  const h = chat[chat.length - 1]?.headers.traceparent;
  return Array.isArray(h) ? h[0] : h;
}

describe('gateway tracing (OpenTelemetry, GenAI conventions)', () => {
  const prisma = new PrismaService(loadConfig(process.env));
  let flaky: SimServer;
  let steady: SimServer;
  let collector: FakeOtlpCollector;
  let key: string;
  let orgId: string;
  let keyId: string;
  let dir: string;

  beforeAll(async () => {
    flaky = await startSim({ models: [UPSTREAM], itlMs: 1, outputTokens: 12 });
    steady = await startSim({ models: [UPSTREAM], itlMs: 1, outputTokens: 12 });
    collector = await startFakeOtlpCollector();
    dir = mkdtempSync(join(tmpdir(), 'gw-trace-'));
    const org = await new OrgsRepository(prisma).create(`tr-${randomUUID().slice(0, 12)}`, 'Tracing');
    const minted = mintApiKey();
    // limits on: the limiter's round trip (admission) runs, and is traced
    const row = await new ApiKeysRepository(prisma).create({
      orgId: org!.id,
      name: 'traced',
      prefix: minted.prefix,
      secretHash: minted.secretHash,
      allowedModels: [],
      expiresAt: null,
      createdById: null,
      rpmLimit: 10_000,
    });
    key = minted.key;
    orgId = org!.id;
    keyId = row.id;
  });

  afterAll(async () => {
    await Promise.all([flaky?.close(), steady?.close(), collector?.close()]);
    await prisma.$disconnect();
  });

  describe('on: OTEL_EXPORTER_OTLP_ENDPOINT set', () => {
    let gateway: GatewayProcess;
    const probeOut = () => join(dir, 'modules-on.json');

    beforeAll(async () => {
      gateway = await spawnGateway({
        tiersYaml: tiers(flaky, steady),
        env: {
          OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
          OTEL_BSP_SCHEDULE_DELAY: '50',
          OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=e2e',
          NODE_OPTIONS: `--require ${PROBE}`,
          MODULE_PROBE_OUT: probeOut(),
        },
      });
    });

    afterAll(async () => {
      await gateway?.stop();
    });

    it('a streamed chat through the openai SDK: its spans, their links, and the traceparent the engine received', async () => {
      flaky.faults.add({ kind: 'error-before', status: 503, count: 1 });
      const traceId = randomBytes(16).toString('hex');
      const clientSpanId = randomBytes(8).toString('hex');
      const client = new OpenAI({ apiKey: key, baseURL: gateway.baseURL, maxRetries: 0, defaultHeaders: { traceparent: `00-${traceId}-${clientSpanId}-01` } });
      const stream = await client.chat.completions.create({
        model: MODEL,
        messages,
        stream: true,
        max_tokens: 5,
        temperature: 0.5,
        stream_options: { include_usage: true },
      });
      let text = '';
      let id = '';
      let usage: OpenAI.CompletionUsage | null | undefined = null;
      const finish: string[] = [];
      for await (const chunk of stream) {
        id ||= chunk.id;
        text += chunk.choices[0]?.delta?.content ?? '';
        if (chunk.choices[0]?.finish_reason) finish.push(chunk.choices[0].finish_reason);
        if (chunk.usage) usage = chunk.usage;
      }
      expect(text.length).toBeGreaterThan(0);
      expect(usage).toBeTruthy();

      const mine = (spans: readonly CollectedSpan[]) => spans.filter((s) => s.traceId === traceId);
      // server, auth (a cold key), model call, admission, two attempts
      const spans = mine(await collector.waitFor((all) => mine(all).length >= 6));
      const one = (pred: (s: CollectedSpan) => boolean, what: string) => {
        const found = spans.filter(pred);
        if (found.length !== 1) throw new Error(`expected one ${what} span, got ${found.length}: ${spans.map((s) => s.name).join(', ')}`);
        return found[0];
      };
      const server = one((s) => s.kind === SPAN_KIND.server, 'server');
      const model = one((s) => s.name === `chat ${MODEL}`, 'model call');
      const auth = one((s) => s.name === 'auth', 'auth');
      const admission = one((s) => s.name === 'admission', 'admission');
      const attempts = spans.filter((s) => s.name === 'POST /v1/chat/completions' && s.kind === SPAN_KIND.client).sort((a, b) => Number(a.startNs - b.startNs));

      // the SERVER span continues the client's trace
      expect(server.name).toBe('POST /v1/chat/completions');
      expect(server.parentSpanId).toBe(clientSpanId);
      expect(server.attributes).toMatchObject({
        'http.request.method': 'POST',
        'http.route': '/v1/chat/completions',
        'http.response.status_code': 200,
        'spot.org_id': orgId,
        'spot.key_id': keyId,
        'spot.tier': 'steady',
      });
      expect(server.status.code).toBe(STATUS_CODE.unset);
      expect(server.resource).toMatchObject({ 'service.name': 'spotinference-gateway', 'deployment.environment.name': 'e2e' });

      // the model call: GenAI semantic conventions
      expect(model.kind).toBe(SPAN_KIND.client);
      expect(model.parentSpanId).toBe(server.spanId);
      expect(model.attributes).toMatchObject({
        'gen_ai.operation.name': 'chat',
        'gen_ai.provider.name': 'vllm',
        'gen_ai.request.model': MODEL,
        'gen_ai.request.max_tokens': 5,
        'gen_ai.request.temperature': 0.5,
        'gen_ai.response.model': UPSTREAM,
        'gen_ai.response.id': id,
        'gen_ai.response.finish_reasons': finish,
        'gen_ai.usage.input_tokens': usage!.prompt_tokens,
        'gen_ai.usage.output_tokens': usage!.completion_tokens,
        'server.address': '127.0.0.1',
        'server.port': steady.port,
        'spot.tier': 'steady',
        'spot.org_id': orgId,
        'spot.key_id': keyId,
        'http.response.status_code': 200,
      });
      expect(finish).toEqual(['length']);
      expect(model.status.code).toBe(STATUS_CODE.unset);
      // nested in time (spans' clocks are anchored apart: a millisecond of slack)
      const ms = 1_000_000n;
      expect(model.startNs >= server.startNs - ms && model.endNs <= server.endNs + ms).toBe(true);

      expect(auth.parentSpanId).toBe(server.spanId);
      expect(auth.attributes['spot.key_cache']).toBe('miss');
      expect(admission.parentSpanId).toBe(model.spanId);
      expect(admission.attributes['spot.admitted']).toBe(true);

      // each engine request: the failed one, then the retry on the other tier
      expect(attempts).toHaveLength(2);
      const [failed, served] = attempts;
      for (const a of attempts) expect(a.parentSpanId).toBe(model.spanId);
      expect(failed.attributes).toMatchObject({ 'server.port': flaky.port, 'spot.tier': 'flaky-spot', 'http.response.status_code': 503, 'error.type': '503' });
      expect(failed.status.code).toBe(STATUS_CODE.error);
      expect(served.attributes).toMatchObject({
        'server.address': '127.0.0.1',
        'server.port': steady.port,
        'url.full': `${steady.url}/v1/chat/completions`,
        'spot.tier': 'steady',
        'http.request.resend_count': 1,
        'http.response.status_code': 200,
        'gen_ai.response.id': id,
      });
      expect(served.status.code).toBe(STATUS_CODE.unset);
      // the engine got each attempt's own span as its parent
      expect(traceparentOf(flaky)).toBe(`00-${traceId}-${failed.spanId}-01`);
      expect(traceparentOf(steady)).toBe(`00-${traceId}-${served.spanId}-01`);
      // exported as protobuf, the proto exporter's encoding (OTLP/HTTP's default)
      expect(collector.requests.every((r) => r.contentType === 'application/x-protobuf')).toBe(true);
    });

    it('a request refused before any engine: the server span says so, no engine request is traced', async () => {
      const client = new OpenAI({ apiKey: key, baseURL: gateway.baseURL, maxRetries: 0 });
      collector.reset();
      await expect(client.chat.completions.create({ model: 'no-such-model', messages })).rejects.toMatchObject({ status: 404 });
      const spans = await collector.waitFor((all) => all.some((s) => s.kind === SPAN_KIND.server));
      const server = spans.find((s) => s.kind === SPAN_KIND.server)!;
      const trace = spans.filter((s) => s.traceId === server.traceId);
      expect(server.parentSpanId).toBe('');
      expect(server.attributes['http.response.status_code']).toBe(404);
      // a 4xx is the client's error, not the server's (HTTP conventions); the model call records it
      expect(server.status.code).toBe(STATUS_CODE.unset);
      const model = trace.find((s) => s.name === 'chat no-such-model')!;
      expect(model.attributes['error.type']).toBe('404');
      expect(model.status.code).toBe(STATUS_CODE.error);
      expect(trace.some((s) => s.name.startsWith('POST /v1/') && s.kind === SPAN_KIND.client)).toBe(false);
      // a warm key: no auth span
      expect(trace.some((s) => s.name === 'auth')).toBe(false);
    });

    it('loads the SDK (the contrast of the test below)', async () => {
      expect(await gateway.stop()).toBe(0);
      expect(loadedModules(probeOut()).some((m) => m.includes('/node_modules/@opentelemetry/sdk-trace/'))).toBe(true);
    });
  });

  describe('off: no OTLP endpoint', () => {
    it('serves, exports nothing, sends no traceparent, and never loads the OpenTelemetry SDK', async () => {
      collector.reset();
      flaky.reset();
      steady.reset();
      const probe = join(dir, 'modules-off.json');
      // every OTEL_* variable but the endpoint: they alone turn nothing on
      const gateway = await spawnGateway({
        tiersYaml: tiers(flaky, steady),
        env: { OTEL_EXPORTER_OTLP_ENDPOINT: '', OTEL_SERVICE_NAME: 'off', OTEL_TRACES_SAMPLER: 'always_on', NODE_OPTIONS: `--require ${PROBE}`, MODULE_PROBE_OUT: probe },
      });
      try {
        const client = new OpenAI({ apiKey: key, baseURL: gateway.baseURL, maxRetries: 0 });
        const stream = await client.chat.completions.create({ model: MODEL, messages, stream: true, max_tokens: 3 });
        let n = 0;
        for await (const chunk of stream) n += chunk.choices.length;
        expect(n).toBeGreaterThan(0);
        const sent = [...flaky.received, ...steady.received];
        expect(sent).toHaveLength(1);
        expect(sent[0].headers.traceparent).toBeUndefined();
      } finally {
        expect(await gateway.stop()).toBe(0);
      }
      expect(existsSync(probe)).toBe(true);
      const modules = loadedModules(probe);
      expect(modules.some((m) => m.includes('/@nestjs/core/'))).toBe(true); // the probe saw the app
      // no SDK, exporter or resource module (the API alone, a no-op, is prom-client's: it loads it for exemplars)
      expect(modules.filter((m) => m.includes('/@opentelemetry/') && !m.includes('/@opentelemetry/api/'))).toEqual([]);
      expect(collector.requests).toHaveLength(0);
    });
  });
});
