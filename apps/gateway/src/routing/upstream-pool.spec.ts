import type { Pool } from 'undici';
import { Endpoint } from './upstream-pool';

describe('Endpoint circuit breaker', () => {
  const pool = {} as Pool;
  const make = () => new Endpoint('http://e', 'spot', '0', pool, { failures: 3, cooldownMs: 1_000 });

  it('opens after the configured run of failed responses, at once on a vanished engine', () => {
    const e = make();
    expect(e.failed('status', '500', 0)).toBe(false);
    expect(e.failed('status', '500', 0)).toBe(false);
    e.succeeded();
    expect(e.failed('status', '500', 0)).toBe(false);
    expect(e.failed('status', '500', 0)).toBe(false);
    expect(e.failed('status', '500', 10)).toBe(true);
    expect(e.state).toBe('open');
    expect(e.available(500)).toBe(false);

    const f = make();
    expect(f.failed('connect', 'ECONNREFUSED', 0)).toBe(true);
    expect(f).toMatchObject({ state: 'open', ejections: 1, lastError: 'ECONNREFUSED' });
  });

  it('lets one probe through after the cooldown; its success closes, its failure reopens', () => {
    const e = make();
    e.failed('connect', 'ECONNRESET', 0);
    expect(e.available(1_000)).toBe(true);
    expect(e.state).toBe('half-open');
    e.taken();
    expect(e.available(1_001)).toBe(false); // one probe at a time
    e.released();
    e.succeeded();
    expect(e.state).toBe('closed');
    expect(e.available(1_002)).toBe(true);

    e.failed('connect', 'ECONNRESET', 2_000);
    expect(e.available(3_000)).toBe(true);
    e.taken();
    e.released();
    expect(e.failed('status', '503', 3_001)).toBe(true);
    expect(e.state).toBe('open');
    expect(e.available(3_500)).toBe(false);
  });

  it('usable() answers like available() without turning an open circuit half-open; uses counts attempts', () => {
    const e = make();
    expect(e.usable(0)).toBe(true);
    e.failed('connect', 'ECONNREFUSED', 0);
    expect(e.usable(999)).toBe(false);
    expect(e.usable(1_000)).toBe(true);
    expect(e.state).toBe('open');
    expect(e.available(1_000)).toBe(true);
    e.taken();
    expect(e.usable(1_000)).toBe(false); // its one probe is out
    e.released();
    e.taken();
    e.released();
    expect(e.uses).toBe(2);
  });

  it('a probe abandoned by its client frees the next one', () => {
    const e = make();
    e.failed('connect', 'x', 0);
    expect(e.available(1_000)).toBe(true);
    e.taken();
    expect(e.available(1_000)).toBe(false);
    e.released();
    expect(e.available(1_000)).toBe(true);
    expect(e.inflight).toBe(0);
  });
});
