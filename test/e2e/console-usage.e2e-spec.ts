import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UsageRollupService } from '@spot/billing';
import { PrismaService, UsageRollupsRepository, UsageEventsRepository } from '@spot/db';
import { type Browser, type ConsoleStack, newGitHubUser, startConsoleStack } from '../support/console-stack';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const j = async (r: Response | Promise<Response>): Promise<any> => (await r).json();

describe('console: usage and the bill', () => {
  let s: ConsoleStack;
  let owner: Browser;
  let stranger: Browser;
  let slug: string;
  let keyIds: string[];

  beforeAll(async () => {
    s = await startConsoleStack();
    owner = await s.signIn(newGitHubUser('usage'));
    stranger = await s.signIn(newGitHubUser('stranger'));
    slug = `use-${Math.random().toString(36).slice(2, 10)}`;
    await owner.api('POST', '/api/orgs', { slug, name: 'Usage' });
    const a = await j(owner.api('POST', `/api/orgs/${slug}/keys`, { name: 'alpha' }));
    const b = await j(owner.api('POST', `/api/orgs/${slug}/keys`, { name: 'beta' }));
    keyIds = [a.id, b.id];
    const org = await s.app.get(PrismaService).org.findUniqueOrThrow({ where: { slug } });
    // October 2026: two days, two models, two tiers, two keys; costs chosen so that rounding matters
    const events = [
      { at: '2026-10-03T10:15:00Z', key: 0, model: 'm-1', tier: 'spot', prompt: 100, completion: 50, cost: 12_345_678 },
      { at: '2026-10-03T11:00:00Z', key: 1, model: 'm-1', tier: 'spot', prompt: 200, completion: 10, cost: 4_999_999 },
      { at: '2026-10-04T09:00:00Z', key: 0, model: 'm-2', tier: 'od', prompt: 30, completion: 70, cost: 7_654_321 },
      { at: '2026-10-04T23:59:59Z', key: 1, model: 'm-1', tier: 'od', prompt: 5, completion: 5, cost: 5_000_000 },
    ];
    await s.app.get(UsageEventsRepository).insertMany(
      events.map((e, i) => ({
        requestId: `usage-page-${slug}-${i}`,
        createdAt: new Date(e.at),
        orgId: org.id,
        keyId: keyIds[e.key],
        model: e.model,
        tier: e.tier,
        promptTokens: e.prompt,
        completionTokens: e.completion,
        durationMs: 1,
        status: 200,
        costNanos: BigInt(e.cost),
      })),
    );
  });
  afterAll(async () => {
    await s?.close();
  });

  const october = 'from=2026-10-01&to=2026-11-01';

  it('reports usage by day, model, tier and key, the same before and after the rollup', async () => {
    const before = await j(owner.fetch(`/api/orgs/${slug}/usage?${october}&group=day`));
    expect(before.rows.map((r: { group: string; requests: number; promptTokens: number }) => [r.group, r.requests, r.promptTokens])).toEqual([
      ['2026-10-03', 2, 300],
      ['2026-10-04', 2, 35],
    ]);
    expect(before.totals).toMatchObject({ requests: 4, promptTokens: 335, completionTokens: 135 });
    expect(before.totals.costUsd).toBeCloseTo(0.029999998, 9);

    await new UsageRollupService(s.app.get(UsageRollupsRepository)).runPass();
    expect(await j(owner.fetch(`/api/orgs/${slug}/usage?${october}&group=day`))).toEqual(before);

    const byModel = await j(owner.fetch(`/api/orgs/${slug}/usage?${october}&group=model`));
    expect(byModel.rows.map((r: { group: string; requests: number }) => [r.group, r.requests])).toEqual([
      ['m-1', 3],
      ['m-2', 1],
    ]);
    const byTier = await j(owner.fetch(`/api/orgs/${slug}/usage?${october}&group=tier`));
    expect(byTier.rows.map((r: { group: string }) => r.group)).toEqual(['od', 'spot']);
    const byKey = await j(owner.fetch(`/api/orgs/${slug}/usage?${october}&group=key`));
    expect(byKey.rows).toHaveLength(2);
    expect(byKey.rows.map((r: { label: string }) => r.label.split(' ')[0]).sort()).toEqual(['alpha', 'beta']);
  });

  it('exports CSV', async () => {
    const res = await owner.fetch(`/api/orgs/${slug}/usage.csv?${october}&group=model`);
    expect(res.headers.get('content-type')).toBe('text/csv; charset=utf-8');
    expect(res.headers.get('content-disposition')).toMatch(/attachment; filename="usage-.*-by-model\.csv"/);
    const lines = (await res.text()).trim().split('\r\n');
    expect(lines[0]).toBe('model,label,requests,prompt_tokens,completion_tokens,cached_tokens,audio_seconds,cost_usd,cached_savings_usd');
    expect(lines.slice(1)).toEqual(['m-1,,3,305,65,0,0,0.022345677,0.000000000', 'm-2,,1,30,70,0,0,0.007654321,0.000000000']);
  });

  it('bills the period from the price book: usage of models with no price line is shown as unpriced, not billed', async () => {
    const bill = await j(owner.fetch(`/api/orgs/${slug}/bill?period=2026-10`));
    expect(bill).toMatchObject({ period: '2026-10', currency: 'usd', source: 'price_book', lines: [], totalCents: 0, unpricedTokens: 470, stripe: null });
    expect((await j(owner.fetch(`/api/orgs/${slug}/bill?period=2026-09`))).unpricedTokens).toBe(0);
  });

  it('validates the query and keeps other tenants out', async () => {
    const bad = await owner.fetch(`/api/orgs/${slug}/usage?group=hour`);
    expect(bad.status).toBe(400);
    expect(await j(bad)).toMatchObject({ error: { param: 'group' } });
    expect((await owner.fetch(`/api/orgs/${slug}/bill?period=2026-13`)).status).toBe(400);
    expect((await owner.fetch(`/api/orgs/${slug}/usage?from=2026-10-05&to=2026-10-01`)).status).toBe(400);
    for (const path of [`/api/orgs/${slug}/usage`, `/api/orgs/${slug}/usage.csv`, `/api/orgs/${slug}/bill`]) {
      expect({ path, status: (await stranger.fetch(path)).status }).toEqual({ path, status: 404 });
    }
    for (const path of [`/orgs/${slug}/usage`, `/orgs/${slug}/bill`]) {
      expect({ path, status: (await stranger.fetch(path, { headers: { accept: 'text/html' } })).status }).toEqual({ path, status: 404 });
    }
  });

  it('renders the usage page with a daily chart; the bill page is the billing page', async () => {
    const usage = await (await owner.fetch(`/orgs/${slug}/usage?${october}`)).text();
    expect(usage).toContain('<svg role="img"');
    expect((usage.match(/<rect /g) ?? []).length).toBe(2);
    expect(usage).toContain('2026-10-03');
    const bill = await owner.fetch(`/orgs/${slug}/bill?period=2026-10`);
    expect(bill.status).toBe(303);
    expect(bill.headers.get('location')).toBe(`/orgs/${slug}/billing?period=2026-10`);
  });
});

describe('console: what prompt caching saved', () => {
  let s: ConsoleStack;
  let owner: Browser;
  let slug: string;
  const EVIL = '<img src=x onerror=alert(1)>';

  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'usage-cache-'));
    writeFileSync(
      join(dir, 'tiers.yaml'),
      `tiers:
  - name: spot
    kind: spot
    endpoints: [http://127.0.0.1:9]
    models:
      - id: m-c
        price: { input_per_mtok: 2, output_per_mtok: 4, cached_input_per_mtok: 0.5 }
      - id: m-p
        price: { input_per_mtok: 1, output_per_mtok: 2 }
  - name: od
    kind: on-demand
    endpoints: [http://127.0.0.1:9]
    models:
      - id: m-c
        price: { input_per_mtok: 3, output_per_mtok: 6, cached_input_per_mtok: 1 }
`,
    );
    s = await startConsoleStack({ TIERS_FILE: join(dir, 'tiers.yaml') });
    owner = await s.signIn(newGitHubUser('saver'));
    slug = `save-${Math.random().toString(36).slice(2, 10)}`;
    await owner.api('POST', '/api/orgs', { slug, name: 'Saver' });
    const key = await j(owner.api('POST', `/api/orgs/${slug}/keys`, { name: 'k' }));
    const org = await s.app.get(PrismaService).org.findUniqueOrThrow({ where: { slug } });
    const events = [
      // 400k cached at 2 - 0.5 $/M: $0.60 saved; 200k at 3 - 1: $0.40; none priced apart for m-p, nor for an unpriced model
      { at: '2026-10-03T10:00:00Z', model: 'm-c', tier: 'spot', prompt: 1_000_000, cached: 400_000 },
      { at: '2026-10-04T10:00:00Z', model: 'm-c', tier: 'od', prompt: 500_000, cached: 200_000 },
      { at: '2026-10-04T11:00:00Z', model: 'm-p', tier: 'spot', prompt: 300_000, cached: 100_000 },
      { at: '2026-10-04T12:00:00Z', model: EVIL, tier: 'spot', prompt: 20, cached: 10 },
    ];
    await s.app.get(UsageEventsRepository).insertMany(
      events.map((e, i) => ({
        requestId: `usage-cache-${slug}-${i}`,
        createdAt: new Date(e.at),
        orgId: org.id,
        keyId: key.id,
        model: e.model,
        tier: e.tier,
        promptTokens: e.prompt,
        completionTokens: 0,
        cachedTokens: e.cached,
        durationMs: 1,
        status: 200,
        costNanos: 1n,
      })),
    );
  });
  afterAll(async () => {
    await s?.close();
  });

  const october = 'from=2026-10-01&to=2026-11-01';

  it('reports cached tokens and what they saved per group, per model and in total (JSON and CSV)', async () => {
    const byModel = await j(owner.fetch(`/api/orgs/${slug}/usage?${october}&group=model`));
    expect(byModel.rows.map((r: { group: string; cachedTokens: number; cachedSavingsUsd: number }) => [r.group, r.cachedTokens, r.cachedSavingsUsd])).toEqual([
      [EVIL, 10, 0],
      ['m-c', 600_000, 1],
      ['m-p', 100_000, 0],
    ]);
    expect(byModel.totals).toMatchObject({ cachedTokens: 700_010, cachedSavingsUsd: 1 });
    // by day, the per-model caching summary is the same
    const byDay = await j(owner.fetch(`/api/orgs/${slug}/usage?${october}&group=day`));
    expect(byDay.rows.map((r: { group: string; cachedSavingsUsd: number }) => [r.group, r.cachedSavingsUsd])).toEqual([
      ['2026-10-03', 0.6],
      ['2026-10-04', 0.4],
    ]);
    expect(byDay.caching).toEqual([
      { model: EVIL, cachedTokens: 10, cachedSavingsUsd: 0 },
      { model: 'm-c', cachedTokens: 600_000, cachedSavingsUsd: 1 },
      { model: 'm-p', cachedTokens: 100_000, cachedSavingsUsd: 0 },
    ]);

    const csv = (await (await owner.fetch(`/api/orgs/${slug}/usage.csv?${october}&group=model`)).text()).trim().split('\r\n');
    expect(csv[0]).toBe('model,label,requests,prompt_tokens,completion_tokens,cached_tokens,audio_seconds,cost_usd,cached_savings_usd');
    expect(csv[1]).toBe(`${EVIL},,1,20,0,10,0,0.000000001,0.000000000`);
    expect(csv[2]).toBe('m-c,,2,1500000,0,600000,0,0.000000002,1.000000000');
  });

  it('shows them on the usage page, model names escaped', async () => {
    const html = await (await owner.fetch(`/orgs/${slug}/usage?${october}&group=day`, { headers: { accept: 'text/html' } })).text();
    expect(html).toContain('<th scope="col">Saved by caching</th>');
    expect(html).toContain('<td data-testid="cached-savings-total">$1.00</td>');
    expect(html).toContain('<h2>Prompt caching</h2>');
    expect(html).toContain('<tr><td>m-c</td><td>600,000</td><td>$1.00</td></tr>');
    expect(html).toContain('<tr><td>&lt;img src=x onerror=alert(1)&gt;</td><td>10</td><td>$0.00</td></tr>');
    expect(html).not.toContain(EVIL);
  });
});
