import { ConfigError, loadConfig } from './config';

describe('loadConfig', () => {
  it('fills defaults for an empty environment', () => {
    const c = loadConfig({});
    expect(c.GATEWAY_PORT).toBe(8080);
    expect(c.CONSOLE_PORT).toBe(8081);
    expect(c.DATABASE_URL).toBe('postgresql://postgres@127.0.0.1:5432/spotinference');
    expect(c.REDIS_URL).toBe('redis://127.0.0.1:6379');
    expect(c.TIERS_FILE).toBe('tiers.yaml');
  });

  it('coerces numbers and treats empty strings as unset', () => {
    const c = loadConfig({ GATEWAY_PORT: '9000', CONSOLE_PORT: '' });
    expect(c.GATEWAY_PORT).toBe(9000);
    expect(c.CONSOLE_PORT).toBe(8081);
  });

  it('names every bad variable and what it expected', () => {
    let err: unknown;
    try {
      loadConfig({ GATEWAY_PORT: 'eighty', DATABASE_URL: 'mysql://x', REDIS_URL: 'not a url' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const msg = (err as Error).message;
    expect(msg).toMatch(/GATEWAY_PORT="eighty": .*number/);
    expect(msg).toMatch(/DATABASE_URL="mysql:\/\/x": expected a postgresql: or postgres: URL/);
    expect(msg).toMatch(/REDIS_URL="not a url"/);
  });

  it('GATEWAY_PROCESSES: 1 by default, a count, or auto / 0 for one per core', () => {
    expect(loadConfig({}).GATEWAY_PROCESSES).toBe(1);
    expect(loadConfig({ GATEWAY_PROCESSES: '3' }).GATEWAY_PROCESSES).toBe(3);
    expect(loadConfig({ GATEWAY_PROCESSES: 'auto' }).GATEWAY_PROCESSES).toBe(0);
    expect(loadConfig({ GATEWAY_PROCESSES: '0' }).GATEWAY_PROCESSES).toBe(0);
    expect(() => loadConfig({ GATEWAY_PROCESSES: 'two' })).toThrow(/GATEWAY_PROCESSES="two": expected a number of processes, or auto/);
  });

  it('returns a frozen object', () => {
    expect(Object.isFrozen(loadConfig({}))).toBe(true);
  });
});
