import { UsageEventsRepository } from '@spot/db';
import { type SimServer, startSim } from '../../apps/vllm-sim/src/sim-server';
import { startTierGateway, TIER_UPSTREAM, type TierGateway, tierYaml } from '../support/tiers-stack';

const messages = [{ role: 'user' as const, content: 'hi' }];

/** Spot preemption at the worst moment for a stream: the engine has answered 200, no token is out yet. */
describe('tiers: a spot replica lost during prefill', () => {
  let spot: SimServer;
  let od: SimServer;
  let g: TierGateway;

  beforeAll(async () => {
    // spot answers at once (headers) and takes long before the first token, as vLLM does while a request is
    // queued or prefilled; on-demand answers quickly
    spot = await startSim({ models: [TIER_UPSTREAM], ttftMs: 10_000, itlMs: 5, outputTokens: 6 });
    od = await startSim({ models: [TIER_UPSTREAM], outputTokens: 6 });
    g = await startTierGateway(`tiers:\n${tierYaml('od', 'on-demand', od.url, 'pf-model')}${tierYaml('spot', 'spot', spot.url, 'pf-model')}`);
  });

  afterAll(async () => {
    await g?.app.close();
    await Promise.all([spot, od].map((s) => s?.close().catch(() => undefined)));
  });

  it('requests already on the lost replica, streams included, finish on on-demand with no error; usage is on-demand', async () => {
    const results = Array.from({ length: 6 }, (_, i) =>
      g.client.chat.completions
        .create({ model: 'pf-model', messages, stream: i % 2 === 0 })
        .withResponse()
        .then(
          async ({ data, request_id }) => {
            if ('choices' in data) return { outcome: data.choices[0].message.content ? 'ok' : 'empty', request_id };
            let text = '';
            let finished = false;
            for await (const chunk of data) {
              text += chunk.choices[0]?.delta?.content ?? '';
              if (chunk.choices[0]?.finish_reason) finished = true;
            }
            return { outcome: text && finished ? 'ok' : 'truncated', request_id };
          },
          (e: { status?: number }) => ({ outcome: `error ${e.status}`, request_id: null }),
        ),
    );
    // every request sits in spot's prefill (its stream's head already sent) when spot vanishes
    for (let i = 0; i < 200 && spot.stats.running < 6; i++) await new Promise((r) => setTimeout(r, 20));
    expect(spot.stats.running).toBe(6);
    await spot.close();
    const done = await Promise.all(results);
    expect(done.map((d) => d.outcome)).toEqual(Array(6).fill('ok'));
    expect(od.stats.completed).toBe(6);

    const usage = g.app.get(UsageEventsRepository);
    for (const { request_id } of done) {
      let row = await usage.findByRequestId(request_id!);
      for (let i = 0; i < 100 && row === null; i++) {
        await new Promise((r) => setTimeout(r, 20));
        row = await usage.findByRequestId(request_id!);
      }
      expect(row).toMatchObject({ tier: 'od', status: 200 });
      expect(row!.completionTokens).toBe(6);
    }
    const state = await g.admin();
    expect(state.tiers.find((t) => t.name === 'spot')!.state).toBe('unhealthy');
  });

  it('/admin/tiers does not exist without ADMIN_TOKEN', async () => {
    const bare = await startTierGateway(`tiers:\n${tierYaml('od', 'on-demand', od.url, 'pf-model')}`, { ADMIN_TOKEN: '' });
    try {
      const res = await fetch(`${bare.root}/admin/tiers`, { headers: { authorization: 'Bearer anything-at-all-000000' } });
      expect(res.status).toBe(404);
      expect(await res.json()).toMatchObject({ error: { code: 'not_found' } });
    } finally {
      await bare.app.close();
    }
  });
});
