import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '@spot/config';
import { PrismaService, UsageEventsRepository } from '@spot/db';
import { type SimServer, startSim } from '../../apps/vllm-sim/src/sim-server';
import { CHAT_MODEL, CHAT_UPSTREAM, tiersYaml } from '../support/gateway-stack';
import { type GatewayProcess, seedOrgKey, spawnGateway } from '../support/gateway-process';

const STREAMS = 200;

interface Watched {
  requestId: string | null;
  /** When each content chunk arrived (ms since the epoch). */
  chunks: number[];
  ended: Promise<void>;
}

/** Reads an SSE stream, timestamping every chunk that carries content. */
function watch(url: string, key: string): Watched {
  const w: Watched = { requestId: null, chunks: [], ended: Promise.resolve() };
  w.ended = (async () => {
    const res = await fetch(url, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: CHAT_MODEL, messages: [{ role: 'user', content: 'a long story' }], stream: true, max_tokens: 1000 }),
    });
    w.requestId = res.headers.get('x-request-id');
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let buf = '';
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      buf += decoder.decode(value, { stream: true });
      let at: number;
      while ((at = buf.indexOf('\n\n')) >= 0) {
        const event = buf.slice(0, at);
        buf = buf.slice(at + 2);
        if (!event.startsWith('data: {')) continue;
        const chunk = JSON.parse(event.slice(6)) as { choices?: Array<{ delta?: { content?: string } }> };
        if (chunk.choices?.[0]?.delta?.content) w.chunks.push(Date.now());
      }
    }
  })().catch(() => undefined); // the kill cuts every stream
  return w;
}

/**
 * A gateway killed with SIGKILL mid-stream must not leave the streams it cut unbilled: their progress is journaled
 * as they go, and the next process to use the spool bills each its last recorded progress, marked estimated.
 */
describe('gateway process: a crash bills the streams it cut', () => {
  const prisma = new PrismaService(loadConfig(process.env));
  let sim: SimServer;
  const gateways: GatewayProcess[] = [];

  beforeAll(async () => {
    sim = await startSim({ models: [CHAT_UPSTREAM], itlMs: 25, outputTokens: 1000 });
  });
  afterAll(async () => {
    await Promise.all(gateways.map((g) => g.stop('SIGKILL')));
    await sim?.close();
    await prisma.$disconnect();
  });

  it(`kill -9 during ${STREAMS} streams: every stream a client saw content of has one usage event, with at least the tokens it received`, async () => {
    const { key } = await seedOrgKey(prisma, { slugPrefix: 'crash' });
    const spool = join(mkdtempSync(join(tmpdir(), 'gw-crash-')), 'spool');
    const first = await spawnGateway({ tiersYaml: tiersYaml(sim.url), env: { USAGE_SPOOL_DIR: spool } });
    gateways.push(first);
    const watched = Array.from({ length: STREAMS }, () => watch(`${first.baseURL}/chat/completions`, key));
    // mid-flight: every stream has delivered a few chunks, none is near its end
    for (let i = 0; i < 600 && watched.some((w) => w.chunks.length < 4); i++) await new Promise((r) => setTimeout(r, 10));
    expect(watched.every((w) => w.chunks.length >= 4)).toBe(true);
    const killedAt = Date.now();
    first.child.kill('SIGKILL');
    expect(await first.exited).toBeNull();
    await Promise.all(watched.map((w) => w.ended));

    const seen = watched.filter((w) => w.chunks.length > 0);
    expect(seen).toHaveLength(STREAMS);
    const ids = seen.map((w) => w.requestId!);
    expect(new Set(ids).size).toBe(STREAMS);

    const second = await spawnGateway({ tiersYaml: tiersYaml(sim.url), env: { USAGE_SPOOL_DIR: spool, USAGE_SPOOL_STALE_MS: '500' } });
    gateways.push(second);
    const usage = new UsageEventsRepository(prisma);
    let rows = await usage.findByRequestIds(ids);
    for (let i = 0; i < 100 && rows.length < ids.length; i++) {
      await new Promise((r) => setTimeout(r, 200));
      rows = await usage.findByRequestIds(ids);
    }
    expect(rows).toHaveLength(STREAMS);
    const byId = new Map(rows.map((r) => [r.requestId, r]));
    const short: string[] = [];
    for (const w of seen) {
      const row = byId.get(w.requestId!)!;
      expect(row).toMatchObject({ estimated: true, status: 502, tier: 'test-spot' });
      const receivedBeforeWindow = w.chunks.filter((t) => t < killedAt - 100).length;
      if (row.completionTokens < receivedBeforeWindow) short.push(`${w.requestId}: billed ${row.completionTokens}, received ${receivedBeforeWindow}`);
      // never more than was generated for the client: what it received plus what was in flight
      expect(row.completionTokens).toBeLessThanOrEqual(w.chunks.length + 8);
      expect(row.promptTokens).toBeGreaterThan(0);
      expect(Number(row.costNanos)).toBeGreaterThan(0);
    }
    expect(short).toEqual([]);
  }, 60_000);
});
