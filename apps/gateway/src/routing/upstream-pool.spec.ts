import type { AppConfig } from '@spot/config';
import { ModelCatalog, parseTiersFile } from '@spot/tiers';
import type { Pool } from 'undici';
import { Endpoint, UpstreamPool } from './upstream-pool';

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

describe('UpstreamPool candidates under preemption notices', () => {
  const config = { BREAKER_FAILURES: 3, BREAKER_COOLDOWN_MS: 60_000, UPSTREAM_CONNECTIONS: 1, UPSTREAM_CONNECT_TIMEOUT_MS: 1_000, UPSTREAM_HEADERS_TIMEOUT_MS: 1_000 } as AppConfig;
  const catalog = new ModelCatalog(
    parseTiersFile(
      `tiers:
  - name: spot
    kind: spot
    endpoints: [http://127.0.0.1:1, http://127.0.0.1:2, http://127.0.0.1:3]
    models: [{ id: m, price: { input_per_mtok: 1, output_per_mtok: 1 } }]
  - name: od
    kind: on-demand
    endpoints: [http://127.0.0.1:4]
    models: [{ id: m, price: { input_per_mtok: 2, output_per_mtok: 2 } }]
`,
      't.yaml',
    ),
  );
  let pool: UpstreamPool;
  beforeEach(() => {
    pool = new UpstreamPool(config, catalog);
  });
  afterEach(() => pool.onApplicationShutdown());
  const order = () => pool.candidates(catalog.routesFor('m')!).map((c) => c.endpoint.origin.slice(-1));

  it('sends nothing new to a noticed replica while another replica of the model can take it', () => {
    expect(order()).toEqual(['1', '2', '3', '4']);
    pool.endpoint('http://127.0.0.1:2', 'spot').noticeDeadline = Date.now() + 30_000;
    expect(order()).toEqual(['1', '3', '4', '2']);
    expect(pool.endpoint('http://127.0.0.1:2').available(Date.now())).toBe(false);
    expect(pool.endpoint('http://127.0.0.1:2').usable(Date.now())).toBe(false);
  });

  it('orders the last resorts: noticed before their deadline (latest first), then ejected, then past their deadline (gone)', () => {
    const now = Date.now();
    pool.endpoint('http://127.0.0.1:1', 'spot').noticeDeadline = now + 10_000;
    pool.endpoint('http://127.0.0.1:2', 'spot').noticeDeadline = now + 20_000;
    pool.endpoint('http://127.0.0.1:3', 'spot').noticeDeadline = now - 1;
    pool.endpoint('http://127.0.0.1:4', 'od').failed('connect', 'ECONNREFUSED', now);
    expect(order()).toEqual(['2', '1', '4', '3']);
    pool.endpoint('http://127.0.0.1:1', 'spot').noticeDeadline = 0;
    expect(order()).toEqual(['1', '2', '4', '3']);
  });
});
