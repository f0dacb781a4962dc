import { postJson, until } from '../../../test/support/sim-sse';
import { startSim, type SimServer } from './sim-server';

describe('vllm-sim --max-num-seqs', () => {
  let sim: SimServer;
  const body = { model: 'm1', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 };
  const metric = async (name: string) => Number(new RegExp(`^vllm:${name}\\{model_name="m1",engine="0"\\} ([\\d.]+)$`, 'm').exec(await (await fetch(`${sim.url}/metrics`)).text())?.[1]);

  beforeAll(async () => {
    sim = await startSim({ models: ['m1'], ttftMs: 150, itlMs: 1, maxNumSeqs: 2 });
  });
  afterAll(() => sim.close());

  it('runs at most N requests at once; the others wait in order, counted in vllm:num_requests_waiting', async () => {
    const ended: number[] = [];
    const all: Array<Promise<number>> = [];
    const base = sim.stats.requests;
    for (let i = 0; i < 5; i++) {
      all.push(postJson(`${sim.url}/v1/chat/completions`, body).then(async (r) => {
        await r.text();
        ended.push(i);
        return r.status;
      }));
      // one at a time, so that they arrive in this order
      await until(() => sim.stats.requests === base + i + 1, `request ${i} to arrive`);
    }
    await until(() => sim.stats.waiting === 3, 'three requests to wait');
    expect(sim.stats.running).toBe(2);
    expect(await metric('num_requests_waiting')).toBe(3);
    expect(await metric('num_requests_running')).toBe(2);
    expect(await Promise.all(all)).toEqual([200, 200, 200, 200, 200]);
    // the first two first, then the next two, then the last
    expect(ended.slice(0, 2).sort()).toEqual([0, 1]);
    expect(ended.slice(2, 4).sort()).toEqual([2, 3]);
    expect(ended[4]).toBe(4);
    expect(sim.stats).toMatchObject({ waiting: 0, running: 0 });
  });

  it('a waiting request whose client goes away takes no slot; the slots come back', async () => {
    const first = [postJson(`${sim.url}/v1/chat/completions`, body), postJson(`${sim.url}/v1/chat/completions`, body)];
    const ac = new AbortController();
    const gone = fetch(`${sim.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal: ac.signal }).catch((e: unknown) => e);
    await until(() => sim.stats.waiting === 1, 'the third to wait');
    ac.abort();
    await gone;
    await until(() => sim.stats.waiting === 0, 'the aborted one to leave the queue');
    await Promise.all(first.map(async (p) => (await p).text()));
    // both slots are free again: two at once run without waiting
    const next = [postJson(`${sim.url}/v1/chat/completions`, body), postJson(`${sim.url}/v1/chat/completions`, body)];
    await until(() => sim.stats.running === 2, 'two to run');
    expect(sim.stats.waiting).toBe(0);
    expect((await Promise.all(next)).map((r) => r.status)).toEqual([200, 200]);
  });
});
