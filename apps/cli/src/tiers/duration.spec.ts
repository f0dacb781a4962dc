import { parseDuration } from './duration';

describe('parseDuration', () => {
  it('reads seconds, minutes, hours and milliseconds, and bare seconds', () => {
    expect(parseDuration('30s')).toBe(30);
    expect(parseDuration('2m')).toBe(120);
    expect(parseDuration('1.5m')).toBe(90);
    expect(parseDuration('1h')).toBe(3600);
    expect(parseDuration('1500ms')).toBe(1.5);
    expect(parseDuration('45')).toBe(45);
    expect(parseDuration('0s')).toBe(0);
    expect(parseDuration(' 10S ')).toBe(10);
  });

  it('refuses what is not a duration', () => {
    for (const bad of ['', 's', '-5s', '5d', '1m30s', 'soon', '5 minutes', '1e3']) expect(parseDuration(bad)).toBeNull();
  });
});
