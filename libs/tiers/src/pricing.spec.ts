import { cachedSavingsNanos, costNanos, worstCaseNanos } from './pricing';

describe('pricing', () => {
  const plain = { input_per_mtok: 0.05, output_per_mtok: 0.1 };
  const cachedPrice = { input_per_mtok: 0.2, output_per_mtok: 0.6, cached_input_per_mtok: 0.05 };

  it('prices input and output per million tokens in nano-USD', () => {
    expect(costNanos(plain, { promptTokens: 1_000_000, completionTokens: 0, cachedTokens: 0 })).toBe(50_000_000);
    expect(costNanos(plain, { promptTokens: 7, completionTokens: 3, cachedTokens: 0 })).toBe(7 * 50 + 3 * 100);
  });

  it('charges cached prompt tokens at the cached price only when the entry has one', () => {
    expect(costNanos(cachedPrice, { promptTokens: 100, completionTokens: 10, cachedTokens: 40 })).toBe(60 * 200 + 40 * 50 + 10 * 600);
    expect(costNanos(plain, { promptTokens: 100, completionTokens: 0, cachedTokens: 40 })).toBe(100 * 50);
  });

  it('prices audio seconds at audio_per_minute / 60, beside any tokens, and at 0 without the price', () => {
    const audio = { input_per_mtok: 0.05, output_per_mtok: 0.1, audio_per_minute: 0.006 };
    // 0.006 $/min is 0.0001 $/s: 100 000 nano-USD a second
    expect(costNanos(audio, { promptTokens: 0, completionTokens: 0, cachedTokens: 0, audioSeconds: 3 })).toBe(300_000);
    expect(costNanos(audio, { promptTokens: 7, completionTokens: 3, cachedTokens: 0, audioSeconds: 61 })).toBe(7 * 50 + 3 * 100 + 6_100_000);
    expect(costNanos(plain, { promptTokens: 0, completionTokens: 0, cachedTokens: 0, audioSeconds: 60 })).toBe(0);
    expect(worstCaseNanos([plain, audio], 0, 0, 120)).toBe(12_000_000);
  });

  it('says what caching saved: the cost uncached less the cost cached, 0 without a cached price', () => {
    const t = { promptTokens: 100, completionTokens: 10, cachedTokens: 40 };
    expect(cachedSavingsNanos(cachedPrice, t)).toBe(costNanos(cachedPrice, { ...t, cachedTokens: 0 }) - costNanos(cachedPrice, t));
    expect(cachedSavingsNanos(cachedPrice, t)).toBe(40 * 150);
    expect(cachedSavingsNanos(cachedPrice, { promptTokens: 10, cachedTokens: 40 })).toBe(10 * 150);
    expect(cachedSavingsNanos(plain, t)).toBe(0);
  });

  it('takes the dearest rates for the worst case', () => {
    expect(worstCaseNanos([plain, cachedPrice], 10, 5)).toBe(10 * 200 + 5 * 600);
    expect(worstCaseNanos([], 10, 5)).toBe(0);
  });
});
