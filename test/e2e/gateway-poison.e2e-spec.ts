import { loadConfig } from '@spot/config';
import { PrismaService } from '@spot/db';
import OpenAI from 'openai';
import { type SimServer, startSim } from '../../apps/vllm-sim/src/sim-server';
import { type GatewayProcess, seedOrgKey, spawnGateway } from '../support/gateway-process';

const MODEL = 'poison-model';
const UPSTREAM = 'org/poison-model';
const MARKER = 'this prompt crashes the engine';

/**
 * One poisonous request must not take down every engine: an engine that loses its connection after the request
 * was sent may have been killed by it, so the request is retried once, then refused (502) without touching an
 * engine. Three engines that crash on one body, behind a real gateway process.
 */
describe('gateway: a request that crashes engines is retried once, then refused', () => {
  const prisma = new PrismaService(loadConfig(process.env));
  let sims: SimServer[] = [];
  let gw: GatewayProcess;
  let client: OpenAI;
  let afterCleanup = (): void => undefined;

  beforeAll(async () => {
    sims = await Promise.all([0, 1, 2].map(() => startSim({ models: [UPSTREAM], outputTokens: 4 })));
    for (const sim of sims) sim.faults.add({ kind: 'crash', bodyContains: MARKER, count: 'always' });
    const yaml = `tiers:
  - name: spot
    kind: spot
    endpoints: [${sims.map((s) => s.url).join(', ')}]
    models:
      - id: ${MODEL}
        upstream: ${UPSTREAM}
        price: { input_per_mtok: 0.05, output_per_mtok: 0.10 }
`;
    const { key } = await seedOrgKey(prisma, { slugPrefix: 'poison' });
    gw = await spawnGateway({ tiersYaml: yaml, env: { POISON_TTL_S: '300' } });
    client = new OpenAI({ baseURL: gw.baseURL, apiKey: key });
  });
  afterAll(async () => {
    afterCleanup();
    await gw?.stop();
    await Promise.all(sims.map((s) => s.close().catch(() => undefined)));
    await prisma.$disconnect();
  });

  const crashes = (): number => sims.reduce((n, s) => n + s.stats.crashes, 0);
  const poisonReceived = (): number => sims.reduce((n, s) => n + s.received.filter((r) => JSON.stringify(r.body).includes(MARKER)).length, 0);

  it('crashes at most two of three engines, answers 502 upstream_error, and other bodies keep succeeding throughout', async () => {
    let stop = false;
    afterCleanup = () => {
      stop = true;
    };
    let served = 0;
    const failures: string[] = [];
    // other traffic all along: distinct bodies, one at a time
    const background = (async () => {
      for (let i = 0; !stop; i++) {
        await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: `hello ${i}` }], max_tokens: 2 }).then(
          (r) => {
            if (r.choices[0].message.content) served++;
          },
          (e: Error) => failures.push(e.message),
        );
      }
    })();
    const servedAtLeast = async (n: number): Promise<void> => {
      for (let i = 0; i < 1000 && served < n && failures.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    };
    await servedAtLeast(3);
    expect(failures).toEqual([]);

    const poison = { model: MODEL, messages: [{ role: 'user' as const, content: MARKER }], max_tokens: 2 };
    const err = (await client.chat.completions.create(poison).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect(err.status).toBe(502);
    expect(err.code).toBe('upstream_error');
    expect(err.message).toMatch(/failed on two engines/);
    expect(err.message).toMatch(/connection was lost after the request was sent/);
    expect(crashes()).toBe(2);
    expect(poisonReceived()).toBe(2);

    // sent again (the SDK would retry a 502, but x-should-retry says no), streamed or not: refused, no engine touched
    const again = (await client.chat.completions.create(poison).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
    expect(again.status).toBe(502);
    expect(again.code).toBe('upstream_error');
    expect(again.message).toMatch(/refused for up to 300 seconds/);
    const streamed = await client.chat.completions
      .create({ ...poison, stream: true })
      .then(async (s) => {
        for await (const chunk of s) void chunk;
        return 'served';
      })
      .catch((e: { status?: number }) => e.status);
    expect(streamed).toBe(502);
    expect(crashes()).toBe(2);
    expect(poisonReceived()).toBe(2);

    await servedAtLeast(served + 3);
    stop = true;
    await background;
    expect(failures).toEqual([]);

    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    expect(metrics).toMatch(/gateway_poison_requests_total\{event="detected"\} [1-9]/);
    expect(metrics).toMatch(/gateway_poison_requests_total\{event="refused"\} [1-9]/);
  });
});
