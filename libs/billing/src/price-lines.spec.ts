import { centsPerSecond, centsPerToken, lineAmountCents, priceLine, priceLines, tokensByDirection } from './price-lines';

describe('price lines', () => {
  it('turns USD per 1M tokens into exact cents per token', () => {
    expect(centsPerToken(0.05)).toBe('0.000005');
    expect(centsPerToken(0.1)).toBe('0.00001');
    expect(centsPerToken(2.5)).toBe('0.00025');
    expect(centsPerToken(15)).toBe('0.0015');
    expect(centsPerToken(0)).toBe('0');
    expect(centsPerToken(1e-7)).toBe('0.00000000001');
    expect(centsPerToken(10000)).toBe('1');
  });

  it('turns USD per minute of audio into cents per second, exactly or rounded to 12 places', () => {
    expect(centsPerSecond(0.006)).toBe('0.01');
    expect(centsPerSecond(0.003)).toBe('0.005');
    expect(centsPerSecond(0.6)).toBe('1');
    expect(centsPerSecond(0)).toBe('0');
    expect(centsPerSecond(0.01)).toBe('0.016666666667');
    expect(centsPerSecond(0.02)).toBe('0.033333333333');
    expect(centsPerSecond(1e-7)).toBe('0.000000166667');
    expect(lineAmountCents(6_000n, centsPerSecond(0.006))).toBe(60n); // 100 minutes at 0.6 cent
  });

  it('lists an audio line, per second, only where the price book has audio_per_minute', () => {
    const lines = priceLines({
      tiers: [
        {
          name: 'spot',
          kind: 'spot',
          endpoints: ['http://x'],
          // an audio-only model: no batch lines (the Batch API has no audio endpoint)
          models: [{ id: 'w', apis: ['audio'], price: { input_per_mtok: 1, output_per_mtok: 2, audio_per_minute: 0.006 } }],
        },
      ],
    });
    expect(lines.map((l) => `${l.model}:${l.direction}:${l.unitAmountDecimal}`)).toEqual(['w:input:0.0001', 'w:output:0.0002', 'w:audio:0.01']);
    expect(lines[2].eventName).toBe(`spot_audio_seconds_${lines[2].lineKey}`);
  });

  it('rounds each line to the nearest cent, ties away from zero', () => {
    expect(lineAmountCents(100_000n, '0.000005')).toBe(1n); // 0.5 cent -> 1
    expect(lineAmountCents(99_999n, '0.000005')).toBe(0n); // 0.499995
    expect(lineAmountCents(1_234_567n, '0.00001')).toBe(12n); // 12.34567
    expect(lineAmountCents(7n, '3')).toBe(21n);
    expect(lineAmountCents(0n, '0.1')).toBe(0n);
  });

  it('keys a line by model, tier, direction and unit price (a price change is a new line)', () => {
    const a = priceLine('m', 'spot', 'input', '0.000005');
    expect(a.eventName).toBe(`spot_tokens_${a.lineKey}`);
    expect(priceLine('m', 'spot', 'input', '0.000005').lineKey).toBe(a.lineKey);
    expect(priceLine('m', 'spot', 'input', '0.000006').lineKey).not.toBe(a.lineKey);
    expect(priceLine('m', 'spot', 'output', '0.000005').lineKey).not.toBe(a.lineKey);
    expect(() => priceLine('m', 'spot', 'input', '0.0000000000001')).toThrow('more than 12 decimal places');
  });

  it('lists a cached_input line only where the price book prices cached tokens', () => {
    const lines = priceLines({
      tiers: [
        {
          name: 'spot',
          kind: 'spot',
          batch: false,
          endpoints: ['http://x'],
          models: [
            { id: 'a', price: { input_per_mtok: 1, output_per_mtok: 2 } },
            { id: 'b', price: { input_per_mtok: 1, output_per_mtok: 2, cached_input_per_mtok: 0.5 } },
          ],
        },
      ],
    });
    expect(lines.map((l) => `${l.model}:${l.direction}:${l.unitAmountDecimal}`)).toEqual([
      'a:input:0.0001',
      'a:output:0.0002',
      'b:input:0.0001',
      'b:cached_input:0.00005',
      'b:output:0.0002',
    ]);
    expect(tokensByDirection({ promptTokens: 10n, completionTokens: 3n, cachedTokens: 4n, audioSeconds: 0n }, true, false)).toEqual({ input: 6n, cached_input: 4n, output: 3n, audio: 0n });
    expect(tokensByDirection({ promptTokens: 10n, completionTokens: 3n, cachedTokens: 4n, audioSeconds: 0n }, false, false)).toEqual({ input: 10n, cached_input: 0n, output: 3n, audio: 0n });
    // audio seconds are a line only when audio_per_minute prices them
    expect(tokensByDirection({ promptTokens: 0n, completionTokens: 0n, cachedTokens: 0n, audioSeconds: 61n }, false, true)).toMatchObject({ audio: 61n });
    expect(tokensByDirection({ promptTokens: 0n, completionTokens: 0n, cachedTokens: 0n, audioSeconds: 61n }, false, false)).toMatchObject({ audio: 0n });
  });

  it('gives batch tiers lines of their own under <tier>:batch: the discount off each price, or the explicit batch prices', () => {
    const lines = priceLines({
      tiers: [
        {
          name: 'spot',
          kind: 'spot',
          endpoints: ['http://x'],
          models: [
            { id: 'a', price: { input_per_mtok: 1, output_per_mtok: 2, cached_input_per_mtok: 0.5 } },
            { id: 'b', price: { input_per_mtok: 1, output_per_mtok: 2, batch_input_per_mtok: 0.3, batch_output_per_mtok: 0.7 } },
          ],
        },
        { name: 'od', kind: 'on-demand', batch_discount: 0.25, endpoints: ['http://y'], models: [{ id: 'a', price: { input_per_mtok: 1, output_per_mtok: 2 } }] },
        { name: 'od2', kind: 'on-demand', batch: true, batch_discount: 0.25, endpoints: ['http://y'], models: [{ id: 'a', price: { input_per_mtok: 1, output_per_mtok: 2 } }] },
      ],
    });
    const batch = lines.filter((l) => l.tier.endsWith(':batch')).map((l) => `${l.model}@${l.tier}:${l.direction}:${l.unitAmountDecimal}`);
    expect(batch).toEqual([
      'a@spot:batch:input:0.00005',
      'a@spot:batch:cached_input:0.000025',
      'a@spot:batch:output:0.0001',
      'b@spot:batch:input:0.00003',
      'b@spot:batch:output:0.00007',
      // on-demand tiers take batches only when they say so
      'a@od2:batch:input:0.000075',
      'a@od2:batch:output:0.00015',
    ]);
    // a batch line is a line of its own (its own meter), never the interactive one
    const spotInput = lines.find((l) => l.model === 'a' && l.tier === 'spot' && l.direction === 'input')!;
    const batchInput = lines.find((l) => l.model === 'a' && l.tier === 'spot:batch' && l.direction === 'input')!;
    expect(batchInput.lineKey).not.toBe(spotInput.lineKey);
  });
});
