import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tierKeys } from '@spot/tiers';
import { Redis } from 'ioredis';
import { Browser, type ConsoleStack, newGitHubUser, startConsoleStack } from '../support/console-stack';
import { tierYaml } from '../support/tiers-stack';

describe('console: the tiers page', () => {
  let s: ConsoleStack;

  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'console-tiers-'));
    writeFileSync(
      join(dir, 'tiers.yaml'),
      `tiers:\n${tierYaml('od', 'on-demand', 'http://127.0.0.1:9', 'm')}${tierYaml('spot-a', 'spot', 'http://127.0.0.1:10', 'm', '    wake: { driver: vllm-sleep, deadline_s: 30 }\n    idle_sleep_s: 600\n')}`,
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
});
