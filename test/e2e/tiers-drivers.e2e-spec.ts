import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RedisKeys } from '@spot/redis';
import { Redis } from 'ioredis';
import { type SimServer, startSim } from '../../apps/vllm-sim/src/sim-server';
import { TierIdleService } from '../../apps/worker/src/tiers/tier-idle.service';
import { type FakeKubernetes, startFakeKubernetes } from '../fakes/kubernetes/fake-kubernetes';
import { type FakeWakeWebhook, startFakeWakeWebhook } from '../fakes/wake-webhook/fake-wake-webhook';
import { freePort } from '../support/free-port';
import { startTierGateway, TIER_UPSTREAM, type TierGateway, tierYaml } from '../support/tiers-stack';

const messages = [{ role: 'user' as const, content: 'hi' }];

/** An engine that is only there while "its machine runs": started and stopped by a fake control plane. */
class Machine {
  sim: SimServer | null = null;
  starts = 0;
  constructor(readonly port: number) {}
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }
  start(delayMs: number): void {
    setTimeout(() => {
      if (this.sim !== null) return;
      this.starts++;
      void startSim({ models: [TIER_UPSTREAM], port: this.port, outputTokens: 3 }).then((s) => (this.sim = s));
    }, delayMs);
  }
  async stop(): Promise<void> {
    const s = this.sim;
    this.sim = null;
    await s?.close();
  }
}

async function sleepsThroughTheWorker(g: TierGateway, machine: Machine): Promise<void> {
  const redis = new Redis(g.config.REDIS_URL);
  try {
    const worker = new TierIdleService(g.config, redis, new RedisKeys(g.config));
    let slept: string[] = [];
    for (let i = 0; i < 40 && slept.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 250));
      slept = (await worker.runPass()).slept;
    }
    expect(slept).toHaveLength(1);
    for (let i = 0; i < 50 && machine.sim !== null; i++) await new Promise((r) => setTimeout(r, 20));
    expect(machine.sim).toBeNull();
  } finally {
    await redis.quit();
  }
}

describe('wake drivers against their control planes', () => {
  const closers: Array<() => Promise<unknown>> = [];
  afterAll(async () => {
    for (const c of closers.reverse()) await c().catch(() => undefined);
  });

  it('webhook: POSTs wake to the URL, waits for /health, and the worker POSTs sleep when idle', async () => {
    const machine = new Machine(await freePort());
    const hook: FakeWakeWebhook = await startFakeWakeWebhook((action) => {
      if (action === 'wake') machine.start(300);
      else void machine.stop();
    });
    closers.push(() => hook.close(), () => machine.stop());
    const g = await startTierGateway(
      `tiers:\n${tierYaml('hooked', 'spot', machine.url, 'hook-model', `    wake: { driver: webhook, url: "${hook.url}", deadline_s: 10 }\n    idle_sleep_s: 1\n    fallback_while_waking: false\n`)}`,
      { HEALTH_CHECK_INTERVAL_MS: '60000' },
    );
    closers.push(() => g.app.close());
    expect((await g.admin()).tiers[0].state).toBe('asleep'); // probed at boot: nothing answers /health

    const answers = await Promise.all(Array.from({ length: 5 }, () => g.client.chat.completions.create({ model: 'hook-model', messages })));
    expect(answers).toHaveLength(5);
    expect(hook.calls).toEqual([{ action: 'wake', tier: 'hooked' }]);
    expect(machine.starts).toBe(1);

    await sleepsThroughTheWorker(g, machine);
    expect(hook.calls.at(-1)).toEqual({ action: 'sleep', tier: 'hooked' });
  }, 30_000);

  it('kubernetes: PATCHes the scale subresource, waits for readyReplicas and /health; scales to 0 when idle', async () => {
    const machine = new Machine(await freePort());
    const k8s: FakeKubernetes = await startFakeKubernetes({
      token: 'sa-token',
      readyDelayMs: 300,
      onScale: async (_key, replicas) => {
        if (replicas > 0) machine.start(200);
        else await machine.stop();
      },
    });
    k8s.workloads.set('gpu/deployments/vllm-spot', { replicas: 0, readyReplicas: 0 });
    closers.push(() => k8s.close(), () => machine.stop());
    // a service account token, as mounted in a pod
    const tokenFile = join(mkdtempSync(join(tmpdir(), 'sa-')), 'token');
    writeFileSync(tokenFile, 'sa-token\n');
    const g = await startTierGateway(
      `tiers:\n${tierYaml(
        'kube',
        'spot',
        machine.url,
        'kube-model',
        `    wake: { driver: kubernetes, api_server: "${k8s.url}", namespace: gpu, kind: Deployment, name: vllm-spot, replicas: 2, token_file: "${tokenFile}", deadline_s: 10 }\n    idle_sleep_s: 1\n    fallback_while_waking: false\n`,
      )}`,
      { HEALTH_CHECK_INTERVAL_MS: '60000' },
    );
    closers.push(() => g.app.close());
    expect((await g.admin()).tiers[0].state).toBe('asleep');

    const answer = await g.client.chat.completions.create({ model: 'kube-model', messages });
    expect(answer.choices[0].message.content).toEqual(expect.any(String));
    const patches = k8s.requests.filter((r) => r.method === 'PATCH');
    expect(patches).toEqual([{ method: 'PATCH', path: '/apis/apps/v1/namespaces/gpu/deployments/vllm-spot/scale', body: { spec: { replicas: 2 } } }]);
    expect(k8s.workloads.get('gpu/deployments/vllm-spot')).toEqual({ replicas: 2, readyReplicas: 2 });

    await sleepsThroughTheWorker(g, machine);
    expect(k8s.requests.filter((r) => r.method === 'PATCH').at(-1)?.body).toEqual({ spec: { replicas: 0 } });
    expect(k8s.workloads.get('gpu/deployments/vllm-spot')?.replicas).toBe(0);
  }, 30_000);
});
