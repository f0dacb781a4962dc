import { loadConfig } from '@spot/config';
import { PrismaService } from '@spot/db';
import { type SimServer, startSim } from '../../apps/vllm-sim/src/sim-server';
import { freePort } from '../support/free-port';
import { type GatewayProcess, seedOrgKey, spawnGateway } from '../support/gateway-process';
import { CHAT_MODEL, CHAT_UPSTREAM } from '../support/gateway-stack';

const METRICS_TOKEN = 'metrics-token-for-tests-000000000';

/**
 * /metrics of a real gateway process (issue 9, point 15): engines are named by tier and replica index, never by
 * URL, and METRICS_TOKEN puts the page behind a bearer token.
 */
describe('gateway /metrics', () => {
  const prisma = new PrismaService(loadConfig(process.env));
  let sim: SimServer;
  let deadPort: number;
  let key: string;
  const gateways: GatewayProcess[] = [];

  // two tiers so the labels must tell them apart; replica 1 of the spot tier is a port nobody listens on
  const tiers = () => `tiers:
  - name: spot-a
    kind: spot
    endpoints: [${sim.url}, http://127.0.0.1:${deadPort}]
    models:
      - id: ${CHAT_MODEL}
        upstream: ${CHAT_UPSTREAM}
        price: { input_per_mtok: 0.05, output_per_mtok: 0.10 }
  - name: steady-b
    kind: on-demand
    endpoints: [${sim.url}]
    models:
      - id: ${CHAT_MODEL}
        upstream: ${CHAT_UPSTREAM}
        price: { input_per_mtok: 0.05, output_per_mtok: 0.10 }
`;

  beforeAll(async () => {
    sim = await startSim({ models: [CHAT_UPSTREAM] });
    deadPort = await freePort();
    key = (await seedOrgKey(prisma, { slugPrefix: 'metrics' })).key;
  });

  afterAll(async () => {
    await Promise.all(gateways.map((g) => g.stop()));
    await sim?.close();
    await prisma.$disconnect();
  });

  async function start(env: Record<string, string> = {}): Promise<GatewayProcess> {
    const g = await spawnGateway({ tiersYaml: tiers(), env: { HEALTH_CHECK_INTERVAL_MS: '100', ...env } });
    gateways.push(g);
    return g;
  }

  async function chat(g: GatewayProcess, stream: boolean): Promise<void> {
    const res = await fetch(`${g.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: CHAT_MODEL, messages: [{ role: 'user', content: 'hi' }], stream }),
    });
    expect(res.status).toBe(200);
    await res.text();
  }

  const metricsText = async (g: GatewayProcess, headers: Record<string, string> = {}) => (await fetch(`${g.url}/metrics`, { headers })).text();

  /** Polls /metrics until `pattern` shows (the health checker ejects the dead replica within a few rounds). */
  async function waitForMetric(g: GatewayProcess, pattern: RegExp, headers: Record<string, string> = {}): Promise<string> {
    const deadline = Date.now() + 15_000;
    let text = '';
    while (Date.now() < deadline) {
      text = await metricsText(g, headers);
      if (pattern.test(text)) return text;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`/metrics never showed ${pattern}:\n${text}`);
  }

  it('after traffic and an ejection: replicas by tier and index, and no engine URL, host:port or port anywhere', async () => {
    const g = await start();
    for (let i = 0; i < 6; i++) await chat(g, i % 2 === 0);
    const text = await waitForMetric(g, /^gateway_endpoint_ejections_total\{tier="spot-a",replica="1"\} [1-9]/m);

    expect(text).toMatch(/^gateway_requests_total\{route="chat",status="200"\} 6$/m);
    // only the dead replica was ejected, and it is named only by its place in the tiers file
    const ejections = text.split('\n').filter((l) => l.startsWith('gateway_endpoint_ejections_total{'));
    expect(ejections).toEqual([expect.stringMatching(/^gateway_endpoint_ejections_total\{tier="spot-a",replica="1"\} \d+$/)]);
    expect(text).not.toMatch(/endpoint="/);
    for (const secret of [sim.url, `127.0.0.1:${sim.port}`, `:${sim.port}`, `127.0.0.1:${deadPort}`, `:${deadPort}`, 'http://']) {
      expect(text).not.toContain(secret);
    }
    // labels carry no port-like number either (a URL split across labels would show up here)
    expect(text).not.toMatch(new RegExp(`"(${sim.port}|${deadPort})"`));
  });

  it('without METRICS_TOKEN /metrics is open', async () => {
    const g = await start();
    const res = await fetch(`${g.url}/metrics`);
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('gateway_requests_total');
  });

  it('with METRICS_TOKEN: 401 in the OpenAI envelope without it or with a wrong one, 200 with it', async () => {
    const g = await start({ METRICS_TOKEN });
    for (const headers of [{} as Record<string, string>, { authorization: 'Bearer wrong-token-0000000000000000000' }, { authorization: `Bearer ${METRICS_TOKEN}x` }, { authorization: METRICS_TOKEN }]) {
      const res = await fetch(`${g.url}/metrics`, { headers });
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
      const body = await res.json();
      expect(body).toEqual({ error: { message: expect.stringContaining('METRICS_TOKEN'), type: 'invalid_request_error', param: null, code: 'invalid_metrics_token' } });
      expect(JSON.stringify(body)).not.toContain('gateway_');
    }
    const ok = await fetch(`${g.url}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
    expect(ok.status).toBe(200);
    expect(ok.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await ok.text();
    expect(text).toContain('gateway_requests_total');
    // the gate is on /metrics only: the API and the probes answer as before
    await chat(g, true);
    expect((await fetch(`${g.url}/healthz`)).status).toBe(200);
  });
});
