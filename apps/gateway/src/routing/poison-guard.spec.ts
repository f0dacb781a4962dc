import { loadConfig } from '@spot/config';
import { PoisonGuard } from './poison-guard';

describe('PoisonGuard', () => {
  const guard = () => new PoisonGuard(loadConfig({ POISON_TTL_S: '60' }));
  const body = { model: 'm', messages: [{ role: 'user', content: 'x' }] };

  it('refuses a poisoned body for POISON_TTL_S, then forgets it', () => {
    const g = guard();
    const fp = g.fingerprint(body);
    expect(g.active).toBe(false);
    expect(g.isPoisoned(fp, 0)).toBe(false);
    g.poison(fp, 1_000);
    expect(g.active).toBe(true);
    expect(g.isPoisoned(fp, 60_999)).toBe(true);
    expect(g.poisonedCount(60_999)).toBe(1);
    expect(g.isPoisoned(fp, 61_000)).toBe(false);
    expect(g.active).toBe(false);
  });

  it('fingerprints what the engine computes on: stream and stream_options do not count, the prompt does', () => {
    const g = guard();
    expect(g.fingerprint({ ...body, stream: true, stream_options: { include_usage: true } })).toBe(g.fingerprint(body));
    expect(g.fingerprint({ ...body, messages: [{ role: 'user', content: 'y' }] })).not.toBe(g.fingerprint(body));
  });
});
