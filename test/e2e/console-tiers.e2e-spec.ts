import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { randomBytes, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { type UsageEventRow, UsageEventsRepository } from '@spot/db';
import { tierKeys } from '@spot/tiers';
import { Redis } from 'ioredis';
import { Browser, type ConsoleStack, newGitHubUser, startConsoleStack } from '../support/console-stack';
import { tierYaml } from '../support/tiers-stack';

describe('console: the tiers page', () => {
  let s: ConsoleStack;
  // tiers of their own: the stream counts are over every org's usage of the last 24 h in the shared test database
  const run = randomBytes(4).toString('hex');
  const spotX = `spot-${run}`;
  const odX = `od-${run}`;

  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'console-tiers-'));
    writeFileSync(
      join(dir, 'tiers.yaml'),
      `tiers:\n${tierYaml('od', 'on-demand', 'http://127.0.0.1:9', 'm')}${tierYaml('spot-a', 'spot', 'http://127.0.0.1:10', 'm', '    wake: { driver: vllm-sleep, deadline_s: 30 }\n    idle_sleep_s: 600\n')}${tierYaml(spotX, 'spot', 'http://127.0.0.1:11', 'm')}${tierYaml(odX, 'on-demand', 'http://127.0.0.1:12', 'm')}`,
    );
    s = await startConsoleStack({ TIERS_FILE: join(dir, 'tiers.yaml') });
  });
  afterAll(async () => {
    await s?.close();
  });

  it('shows each tier, and the state and history of tiers that sleep, to signed-in users', async () => {
    const redis = new Redis(s.config.REDIS_URL);
    try {
      const history = `${s.config.REDIS_PREFIX}${tierKeys.history('spot-a')}`;
      await redis.lpush(history, JSON.stringify({ at: '2026-11-25T04:00:00.000Z', state: 'awake', reason: 'woke in 812 ms', by: 'gateway g1' }));
      await redis.lpush(history, JSON.stringify({ at: '2026-11-25T04:20:00.000Z', state: 'asleep', reason: 'idle for 600 s', by: 'worker w1' }));
      const deadlineAt = Date.parse('2099-01-01T00:00:30.000Z');
      const notice = { tier: 'spot-a', endpoint: 'http://127.0.0.1:10', deadlineAt, noticedAt: deadlineAt - 30_000, source: 'cli', by: 'cli ops-1' };
      await redis.set(`${s.config.REDIS_PREFIX}${tierKeys.notice('spot-a', 'http://127.0.0.1:10')}`, JSON.stringify(notice), 'PX', 60_000);
    } finally {
      await redis.quit();
    }
    expect((await new Browser(s.base).fetch('/tiers', { headers: { accept: 'text/html' } })).headers.get('location')).toMatch(/^\/signin/);
    const user = await s.signIn(newGitHubUser('tiers'));
    const page = await (await user.fetch('/tiers')).text();
    expect(page).toContain('<th scope="row">od</th>');
    expect(page).toContain('always on');
    expect(page).toContain('data-state="asleep"');
    expect(page).toContain('vllm-sleep, deadline 30 s, sleeps after 600 s idle');
    expect(page).toContain('idle for 600 s (worker w1)');
    expect(page).toContain('woke in 812 ms');
    // the noticed replica, by its index (never its address)
    expect(page).toContain('<li data-notice="coming">replica 0 goes away at <time datetime="2099-01-01T00:00:30.000Z">2099-01-01 00:00:30</time> (cli, cli ops-1)</li>');
    expect(page).not.toContain('127.0.0.1:10');
  });

  it('counts, per tier and over every org, the streams of the last 24 h continued elsewhere, taken over and lost', async () => {
    const now = Date.now();
    const orgs = [randomUUID(), randomUUID()];
    const segment = (request: string, seg: number, tier: string, o: { status?: number; completion?: number; org?: number; hoursAgo?: number } = {}): UsageEventRow => ({
      requestId: `tiers-page-${run}-${request}`,
      segment: seg,
      createdAt: new Date(now - (o.hoursAgo ?? 1) * 3_600_000),
      orgId: orgs[o.org ?? 0],
      keyId: randomUUID(),
      model: 'm',
      tier,
      promptTokens: seg === 0 ? 10 : 0,
      completionTokens: o.completion ?? 5,
      durationMs: 100,
      status: o.status ?? 200,
      costNanos: 1n,
    });
    await s.app.get(UsageEventsRepository).insertMany([
      // continued from spot to on-demand (the other org's: the page is not an org's view)
      segment('a', 0, spotX, { org: 1 }),
      segment('a', 1, odX, { org: 1 }),
      // lost on spot twice (two spot replicas), then on-demand finished it: one stream continued off spot
      segment('b', 0, spotX),
      segment('b', 1, spotX),
      segment('b', 2, odX),
      // continued off spot, then cut on on-demand with nothing more delivered: lost there
      segment('c', 0, spotX, { status: 502 }),
      segment('c', 1, odX, { status: 502, completion: 0 }),
      // cut on spot after tokens reached the client, not continued: lost on spot
      segment('d', 0, spotX, { status: 502, completion: 7 }),
      // not streams lost: an error before any token; a client that went away
      segment('e', 0, spotX, { status: 502, completion: 0 }),
      segment('f', 0, spotX, { status: 499, completion: 9 }),
      // older than 24 h: not counted
      segment('g', 0, spotX, { hoursAgo: 25 }),
      segment('g', 1, odX, { hoursAgo: 25 }),
      segment('h', 0, odX, { hoursAgo: 25, status: 502 }),
      // a plain request on on-demand
      segment('i', 0, odX),
    ]);
    const user = await s.signIn(newGitHubUser('tiers-streams'));
    const page = await (await user.fetch('/tiers')).text();
    const counts = (tier: string) => {
      const cell = new RegExp(`<td data-streams="${tier}">(.*?)</td>`).exec(page)?.[1] ?? '';
      return Object.fromEntries([...cell.matchAll(/<span data-count="([a-z-]+)">(\d+)<\/span>/g)].map((m) => [m[1], Number(m[2])]));
    };
    expect(counts(spotX)).toEqual({ 'continued-off': 3, 'took-over': 1, lost: 1 });
    expect(counts(odX)).toEqual({ 'continued-off': 0, 'took-over': 3, lost: 1 });
    expect(page).toContain(`<td data-streams="${spotX}"><span data-count="continued-off">3</span> continued elsewhere · <span data-count="took-over">1</span> taken over · <span data-count="lost">1</span> lost</td>`);
    expect(page).toContain('<th scope="col">Streams (24 h)</th>');
    expect(page).toContain('<em>continued elsewhere</em> counts the streams whose engine on this tier was lost mid-stream');
  });
});
