import { loadConfig } from '@spot/config';
import { INCIDENT_WINDOW_MS, PoisonGuard } from './poison-guard';

describe('PoisonGuard', () => {
  const guard = () => new PoisonGuard(loadConfig({ POISON_TTL_S: '60' }));
  const body = { model: 'm', messages: [{ role: 'user', content: 'x' }] };

  it('refuses a body after failures on two engines, not after one', () => {
    const g = guard();
    const fp = g.fingerprint(body);
    expect(g.active).toBe(false);
    expect(g.strike(fp, 'http://a', 1_000)).toBe(1);
    expect(g.active).toBe(true);
    expect(g.isPoisoned(fp, 1_001)).toBe(false);
    expect(g.strike(fp, 'http://b', 1_002)).toBe(2);
    expect(g.isPoisoned(fp, 1_003)).toBe(true);
    expect(g.poisonedCount(1_003)).toBe(1);
  });

  it('counts identical requests lost in one engine incident (a preempted replica) once', () => {
    const g = guard();
    const fp = g.fingerprint(body);
    for (let i = 0; i < 5; i++) expect(g.strike(fp, 'http://a', 1_000 + i)).toBe(1);
    expect(g.isPoisoned(fp, 1_010)).toBe(false);
    // the same engine again, later: a second incident (it came back and died on this body again)
    expect(g.strike(fp, 'http://a', 1_010 + INCIDENT_WINDOW_MS + 1)).toBe(2);
  });

  it('forgets strikes after POISON_TTL_S', () => {
    const g = guard();
    const fp = g.fingerprint(body);
    g.strike(fp, 'http://a', 0);
    g.strike(fp, 'http://b', 1);
    expect(g.isPoisoned(fp, 59_999)).toBe(true);
    expect(g.isPoisoned(fp, 60_002)).toBe(false);
    expect(g.active).toBe(false);
  });

  it('fingerprints what the engine computes on: stream and stream_options do not count, the prompt does', () => {
    const g = guard();
    expect(g.fingerprint({ ...body, stream: true, stream_options: { include_usage: true } })).toBe(g.fingerprint(body));
    expect(g.fingerprint({ ...body, messages: [{ role: 'user', content: 'y' }] })).not.toBe(g.fingerprint(body));
  });
});
