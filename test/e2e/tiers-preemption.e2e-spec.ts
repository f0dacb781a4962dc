import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadConfig } from '@spot/config';
import { PrismaService } from '@spot/db';
import OpenAI from 'openai';
import type { NoticeDeadline } from '../../apps/gateway/src/routing/preemption-notices';
import { PreemptionNotices } from '../../apps/gateway/src/routing/preemption-notices';
import { type SimServer, startSim } from '../../apps/vllm-sim/src/sim-server';
import { type FakeNoticeSidecar, startFakeNoticeSidecar } from '../fakes/notice-sidecar/fake-notice-sidecar';
import { type GatewayProcess, seedOrgKey, spawnGateway } from '../support/gateway-process';
import { startTierGateway, TIER_ADMIN_TOKEN, TIER_UPSTREAM, type TierGateway } from '../support/tiers-stack';

/* eslint-disable @typescript-eslint/no-explicit-any */
jest.setTimeout(90_000);

const CLI_MAIN = resolve(__dirname, '../../dist/apps/cli/src/main.js');
const ADMIN = TIER_ADMIN_TOKEN;
const MODEL = 'pre-model';
const messages = [{ role: 'user' as const, content: 'hi' }];
const auth = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' };

const chats = (sim: SimServer) => sim.received.filter((r) => r.method === 'POST' && r.path === '/v1/chat/completions').length;

async function waitFor<T>(what: string, probe: () => Promise<T | null | undefined> | T | null | undefined, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== null && v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A tier of the tiers file; `extra` is more YAML of the tier (indented 4). */
function tier(name: string, kind: 'spot' | 'on-demand', urls: string[], extra = ''): string {
  return `  - name: ${name}\n    kind: ${kind}\n    endpoints: [${urls.join(', ')}]\n${extra}    models:\n      - { id: ${MODEL}, upstream: ${TIER_UPSTREAM}, price: { input_per_mtok: 0.05, output_per_mtok: 0.10 } }\n`;
}

async function admin(gw: { url: string } | { root: string }): Promise<any> {
  const root = 'url' in gw ? gw.url : gw.root;
  const res = await fetch(`${root}/admin/tiers`, { headers: auth });
  expect(res.status).toBe(200);
  return res.json();
}

/** The notice a gateway shows on one replica, or null. */
async function noticeOn(gw: { url: string } | { root: string }, tierName: string, endpoint: string): Promise<any> {
  const view = await admin(gw);
  return view.tiers.find((t: any) => t.name === tierName).endpoints.find((e: any) => e.url === endpoint).notice;
}

function preempt(gw: { url: string } | { root: string }, tierName: string, body: unknown, headers: Record<string, string> = auth): Promise<Response> {
  const root = 'url' in gw ? gw.url : gw.root;
  return fetch(`${root}/admin/tiers/${tierName}/preempt`, { method: 'POST', headers, body: JSON.stringify(body) });
}

async function metric(gw: GatewayProcess, line: RegExp): Promise<number | null> {
  const text = await (await fetch(`${gw.url}/metrics`)).text();
  const m = line.exec(text);
  return m === null ? null : Number(m[1]);
}

function runCli(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [CLI_MAIN, ...args], { env: { ...process.env, LOG_LEVEL: 'warn', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.once('exit', (code) => done({ code, stdout, stderr }));
  });
}

describe('preemption notices', () => {
  const prisma = new PrismaService(loadConfig(process.env));
  let key: string;
  let dir: string;
  const sims: SimServer[] = [];
  const gateways: GatewayProcess[] = [];
  const inProcess: TierGateway[] = [];
  const sidecars: FakeNoticeSidecar[] = [];

  async function sim(more: Partial<Parameters<typeof startSim>[0]> = {}): Promise<SimServer> {
    const s = await startSim({ models: [TIER_UPSTREAM], outputTokens: 4, ...more });
    sims.push(s);
    return s;
  }

  /** A spawned gateway over `tiersYaml` (written to `file` when given, so that the CLI can read the same one). */
  async function gateway(tiersYaml: string, env: Record<string, string> = {}, file?: string): Promise<GatewayProcess> {
    const vars: Record<string, string> = { ADMIN_TOKEN: ADMIN, HEALTH_CHECK_INTERVAL_MS: '200', ...env };
    if (file !== undefined) {
      writeFileSync(file, tiersYaml);
      vars.TIERS_FILE = file;
    }
    const gw = await spawnGateway({ tiersYaml, env: vars, readyTimeoutMs: 40_000 });
    gateways.push(gw);
    return gw;
  }

  function client(gw: GatewayProcess): OpenAI {
    return new OpenAI({ baseURL: gw.baseURL, apiKey: key, maxRetries: 0 });
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'preempt-'));
    ({ key } = await seedOrgKey(prisma, { slugPrefix: 'preempt' }));
  });
  afterAll(async () => {
    await Promise.all(gateways.map((g) => g.stop('SIGKILL')));
    await Promise.all(inProcess.map((g) => g.app.close()));
    await Promise.all(sims.map((s) => s.close().catch(() => undefined)));
    await Promise.all(sidecars.map((s) => s.close()));
    await prisma.$disconnect();
  });

  it('a notice via the admin route: nothing new reaches the replica, its streams finish, it is gone past the deadline; DELETE brings it back', async () => {
    const a = await sim({ itlMs: 40, outputTokens: 30 });
    const b = await sim({ itlMs: 40, outputTokens: 30 });
    const gw = await gateway(`tiers:\n${tier('spot', 'spot', [a.url, b.url])}`);
    const openai = client(gw);

    // streams in flight on both replicas
    const streams = Array.from({ length: 4 }, async () => {
      const s = await openai.chat.completions.create({ model: MODEL, messages, stream: true });
      let text = '';
      let finish: string | null = null;
      for await (const chunk of s) {
        text += chunk.choices[0]?.delta?.content ?? '';
        finish = chunk.choices[0]?.finish_reason ?? finish;
      }
      return { text, finish };
    });
    await waitFor('the streams on both replicas', () => (chats(a) + chats(b) === 4 && chats(a) >= 1 && chats(b) >= 1 ? true : null));
    const streamsOnA = chats(a);

    // what the route refuses, in the OpenAI envelope
    expect((await preempt(gw, 'spot', { deadline_s: 1 }, { 'content-type': 'application/json' })).status).toBe(401);
    const unknownTier = await preempt(gw, 'gpu', { deadline_s: 1 });
    expect(unknownTier.status).toBe(404);
    expect((await unknownTier.json()) as any).toEqual({ error: { message: expect.stringContaining('"gpu"'), type: 'invalid_request_error', param: 'tier', code: 'tier_not_found' } });
    const unknownReplica = await preempt(gw, 'spot', { endpoint: 'http://127.0.0.1:9', deadline_s: 1 });
    expect(unknownReplica.status).toBe(404);
    expect(((await unknownReplica.json()) as any).error).toMatchObject({ code: 'endpoint_not_found', param: 'endpoint' });
    for (const bad of [{}, { deadline_s: -1 }, { deadline_s: '30' }, { deadline_s: 1, extra: true }, { deadline_s: 1e9 }]) {
      const res = await preempt(gw, 'spot', bad);
      expect(res.status).toBe(400);
      expect(((await res.json()) as any).error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_notice' });
    }

    const before = Date.now();
    const taken = await preempt(gw, 'spot', { endpoint: `${a.url}/`, deadline_s: 2 });
    expect(taken.status).toBe(200);
    const body: any = await taken.json();
    expect(body).toMatchObject({ tier: 'spot', notices: [{ endpoint: a.url, source: 'admin' }] });
    const deadlineAt = Date.parse(body.notices[0].deadlineAt);
    expect(deadlineAt).toBeGreaterThanOrEqual(before + 2_000);

    const answers = await Promise.all(Array.from({ length: 10 }, () => openai.chat.completions.create({ model: MODEL, messages, max_tokens: 2 })));
    expect(answers.every((r) => r.choices[0].message.content !== null)).toBe(true);
    expect(chats(a)).toBe(streamsOnA);

    // the streams on the noticed replica finish there, whole
    const done = await Promise.all(streams);
    expect(done.map((d) => d.finish)).toEqual(['stop', 'stop', 'stop', 'stop']);
    expect(new Set(done.map((d) => d.text.length)).size).toBe(1);
    expect(await noticeOn(gw, 'spot', a.url)).toMatchObject({ source: 'admin', gone: false, deadlineAt: new Date(deadlineAt).toISOString() });
    expect(await metric(gw, /^gateway_noticed_replicas\{tier="spot"\} (\d+)/m)).toBe(1);
    expect(await metric(gw, /^gateway_preemption_notices_total\{tier="spot",via="admin"\} (\d+)/m)).toBe(1);

    // past the deadline: gone (it still answers health checks, but is the same machine)
    await waitFor('the deadline', async () => ((await metric(gw, /^gateway_preemption_deadlines_total\{tier="spot"\} (\d+)/m)) === 1 ? true : null));
    expect(Date.now()).toBeGreaterThanOrEqual(deadlineAt);
    expect(await noticeOn(gw, 'spot', a.url)).toMatchObject({ gone: true });
    await new Promise((r) => setTimeout(r, 500)); // a few health checks
    await Promise.all(Array.from({ length: 4 }, () => openai.chat.completions.create({ model: MODEL, messages, max_tokens: 2 })));
    expect(chats(a)).toBe(streamsOnA);

    const cleared = await fetch(`${gw.url}/admin/tiers/spot/preempt?endpoint=${encodeURIComponent(a.url)}`, { method: 'DELETE', headers: { authorization: auth.authorization } });
    expect(cleared.status).toBe(200);
    expect(await cleared.json()).toEqual({ tier: 'spot', cleared: [a.url] });
    expect(await noticeOn(gw, 'spot', a.url)).toBeNull();
    await Promise.all(Array.from({ length: 4 }, () => openai.chat.completions.create({ model: MODEL, messages, max_tokens: 2 })));
    expect(chats(a)).toBeGreaterThan(streamsOnA);
    expect(await metric(gw, /^gateway_noticed_replicas\{tier="spot"\} (\d+)/m)).toBe(0);
  });

  it('past the deadline a replica that went down and answers again is a new machine: back in rotation on every gateway', async () => {
    const a = await sim();
    const b = await sim();
    const port = Number(new URL(a.url).port);
    const tiers = `tiers:\n${tier('spot', 'spot', [a.url, b.url])}`;
    const prefix = `test:${randomUUID()}:`;
    const [g1, g2] = await Promise.all([gateway(tiers, { REDIS_PREFIX: prefix }), gateway(tiers, { REDIS_PREFIX: prefix })]);
    expect((await preempt(g1, 'spot', { endpoint: a.url, deadline_s: 0.3 })).status).toBe(200);
    await waitFor('gone on g2', async () => ((await noticeOn(g2, 'spot', a.url))?.gone === true ? true : null));

    await a.close();
    await new Promise((r) => setTimeout(r, 600)); // health checks fail: the machine went
    const replacement = await sim({ port });
    await waitFor('the replacement in rotation on g2', async () => ((await noticeOn(g2, 'spot', a.url)) === null ? true : null));
    expect(await noticeOn(g1, 'spot', a.url)).toBeNull();
    const openai = client(g2);
    await Promise.all(Array.from({ length: 4 }, () => openai.chat.completions.create({ model: MODEL, messages, max_tokens: 2 })));
    expect(chats(replacement)).toBeGreaterThan(0);
  });

  it('fires the deadline event at the deadline, on the gateway that took the notice and on one that heard of it', async () => {
    const a = await sim();
    const b = await sim();
    const prefix = `test:${randomUUID()}:`;
    const tiers = `tiers:\n${tier('spot', 'spot', [a.url, b.url])}`;
    const g1 = await startTierGateway(tiers, { REDIS_PREFIX: prefix, LOG_LEVEL: 'silent' });
    inProcess.push(g1);
    const g2 = await startTierGateway(tiers, { REDIS_PREFIX: prefix, LOG_LEVEL: 'silent' });
    inProcess.push(g2);
    const events: Array<{ gw: string; at: number; event: NoticeDeadline }> = [];
    g1.app.get(PreemptionNotices).onDeadline((event) => events.push({ gw: 'g1', at: Date.now(), event }));
    const off = g2.app.get(PreemptionNotices).onDeadline((event) => events.push({ gw: 'g2', at: Date.now(), event }));

    const res = await preempt(g1, 'spot', { endpoint: b.url, deadline_s: 1 });
    const deadlineAt = Date.parse(((await res.json()) as any).notices[0].deadlineAt);
    await waitFor('g2 holds it', async () => ((await noticeOn(g2, 'spot', b.url)) !== null ? true : null));
    expect(events).toEqual([]);
    await waitFor('both events', () => (events.length === 2 ? true : null), 5_000);
    for (const e of events) {
      expect(e.event).toEqual({ tier: 'spot', endpoint: b.url, deadlineAt });
      expect(e.at).toBeGreaterThanOrEqual(deadlineAt);
    }
    expect(events.map((e) => e.gw).sort()).toEqual(['g1', 'g2']);

    // an unsubscribed listener hears nothing more
    off();
    await preempt(g1, 'spot', { endpoint: a.url, deadline_s: 0.2 });
    await waitFor('the second event', () => (events.length === 3 ? true : null), 5_000);
    await new Promise((r) => setTimeout(r, 300));
    expect(events.slice(2).map((e) => [e.gw, e.event.endpoint])).toEqual([['g1', a.url]]);
  });

  it("learns a notice by polling each replica's sidecar; a second gateway that does not poll, and one started later, hold it through Redis", async () => {
    const sidecar = await startFakeNoticeSidecar();
    sidecars.push(sidecar);
    const a = await sim();
    const b = await sim();
    const portA = new URL(a.url).port;
    const prefix = `test:${randomUUID()}:`;
    const polling = `tiers:\n${tier('spot', 'spot', [a.url, b.url], `    notice: { url: "${sidecar.url}/notice/{port}", interval_ms: 200 }\n`)}`;
    const quiet = `tiers:\n${tier('spot', 'spot', [a.url, b.url])}`;
    const [g1, g2] = await Promise.all([gateway(polling, { REDIS_PREFIX: prefix }), gateway(quiet, { REDIS_PREFIX: prefix })]);
    await waitFor('polls of both replicas', () => (sidecar.polls(`/notice/${portA}`) > 1 && sidecar.polls(`/notice/${new URL(b.url).port}`) > 1 ? true : null));
    expect(await noticeOn(g1, 'spot', a.url)).toBeNull();

    sidecar.preempt(`/notice/${portA}`, 30);
    const expected = Date.now() + 30_000;
    const onG1 = await waitFor('the notice on g1', () => noticeOn(g1, 'spot', a.url));
    expect(onG1).toMatchObject({ source: 'poll', gone: false });
    // AWS gives the time to the second
    expect(Math.abs(Date.parse(onG1.deadlineAt) - expected)).toBeLessThan(2_000);
    const onG2 = await waitFor('the notice on g2', () => noticeOn(g2, 'spot', a.url));
    expect(onG2).toEqual(onG1);
    expect(await metric(g2, /^gateway_preemption_notices_total\{tier="spot",via="shared"\} (\d+)/m)).toBe(1);
    expect(await metric(g1, /^gateway_preemption_notices_total\{tier="spot",via="poll"\} (\d+)/m)).toBe(1);

    const seen = chats(a);
    const openai = client(g2);
    await Promise.all(Array.from({ length: 6 }, () => openai.chat.completions.create({ model: MODEL, messages, max_tokens: 2 })));
    expect(chats(a)).toBe(seen);

    // a gateway that starts later holds it from its start
    const g3 = await gateway(quiet, { REDIS_PREFIX: prefix });
    // read at boot, or at the next re-read a second later when the boot's read missed its Redis deadline (load)
    expect(await waitFor('the notice on the late gateway', () => noticeOn(g3, 'spot', a.url), 3_000)).toEqual(onG1);

    // the sidecar withdraws it before the deadline: back in rotation everywhere
    sidecar.clear(`/notice/${portA}`);
    await waitFor('cleared on g3', async () => ((await noticeOn(g3, 'spot', a.url)) === null ? true : null));
    expect(await noticeOn(g2, 'spot', a.url)).toBeNull();
  });

  it("wakes the sleeping fallback at the notice when the tier's every replica is noticed, well before the deadline", async () => {
    const spot = await sim();
    const od = await sim({ wakeUpMs: 800 });
    await fetch(`${od.url}/sleep?level=1`, { method: 'POST' });
    const gw = await gateway(`tiers:\n${tier('spot', 'spot', [spot.url])}${tier('od', 'on-demand', [od.url], '    wake: { driver: vllm-sleep, deadline_s: 20 }\n')}`);
    const view = await admin(gw);
    expect(view.tiers.find((t: any) => t.name === 'od').state).toBe('asleep');
    expect(od.received.some((r) => r.path === '/wake_up')).toBe(false);

    const res = await preempt(gw, 'spot', { deadline_s: 20 });
    expect(res.status).toBe(200);
    const deadlineAt = Date.parse(((await res.json()) as any).notices[0].deadlineAt);
    // no request asked for it: the notice did
    await waitFor('the wake', () => (od.received.some((r) => r.path === '/wake_up') ? true : null));
    const wokeAt = Date.now();
    expect(wokeAt).toBeLessThan(deadlineAt);
    await waitFor('od awake', async () => ((await admin(gw)).tiers.find((t: any) => t.name === 'od').state === 'awake' ? true : null));
    expect(await metric(gw, /^gateway_notice_wakes_total\{tier="od"\} (\d+)/m)).toBe(1);

    const seen = chats(spot);
    const r = await client(gw).chat.completions.create({ model: MODEL, messages, max_tokens: 2 });
    expect(r.choices[0].message.content).toEqual(expect.any(String));
    expect(chats(spot)).toBe(seen);
    expect(chats(od)).toBe(1);
  });

  it('`tier preempt` from the CLI sets a notice every gateway takes; `tier resume` clears it', async () => {
    const a = await sim();
    const b = await sim();
    const file = join(dir, `tiers-${randomUUID()}.yaml`);
    const prefix = `test:${randomUUID()}:`;
    const gw = await gateway(`tiers:\n${tier('spot', 'spot', [a.url, b.url])}`, { REDIS_PREFIX: prefix }, file);
    const env = { TIERS_FILE: file, REDIS_PREFIX: prefix };

    const bad = await runCli(['tier', 'preempt', 'spot', '--in', 'soon'], env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--in: expected a duration like 30s');
    const unknown = await runCli(['tier', 'preempt', 'gpu', '--in', '30s'], env);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('No tier is named "gpu"');

    const before = Date.now();
    const out = await runCli(['tier', 'preempt', 'spot', '--endpoint', a.url, '--in', '2m'], env);
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    expect(out.stdout).toContain(`Noticed ${a.url} (tier spot): goes away at`);
    const notice = await waitFor('the notice on the gateway', () => noticeOn(gw, 'spot', a.url), 10_000);
    expect(notice).toMatchObject({ source: 'cli', by: expect.stringMatching(/^cli /), gone: false });
    expect(Date.parse(notice.deadlineAt)).toBeGreaterThanOrEqual(before + 120_000);
    expect(await noticeOn(gw, 'spot', b.url)).toBeNull();
    const seen = chats(a);
    const openai = client(gw);
    await Promise.all(Array.from({ length: 4 }, () => openai.chat.completions.create({ model: MODEL, messages, max_tokens: 2 })));
    expect(chats(a)).toBe(seen);

    const resumed = await runCli(['tier', 'resume', 'spot'], env);
    expect(resumed.code).toBe(0);
    await waitFor('cleared', async () => ((await noticeOn(gw, 'spot', a.url)) === null ? true : null), 10_000);
  });
});
