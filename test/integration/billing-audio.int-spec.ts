import { randomUUID } from 'node:crypto';
import { UsageEventsRepository } from '@spot/db';
import { type BillingTestStack, createOrg, startBillingStack, writeTestTiers } from '../fakes/stripe/billing-test-stack';

// Audio seconds (speech-to-text billed by duration) through the rollup, the Stripe sync and the bill, beside tokens.
const TIERS = `tiers:
  - name: t-spot
    kind: spot
    batch: false
    endpoints: [http://127.0.0.1:9]
    models:
      - id: whisper
        apis: [audio]
        price: { input_per_mtok: 0.5, output_per_mtok: 1, audio_per_minute: 0.006 }
      - id: whisper-free-audio
        price: { input_per_mtok: 0.5, output_per_mtok: 1 }
`;

describe('billing of audio seconds (fake Stripe, real Postgres)', () => {
  let stack: BillingTestStack;
  beforeAll(async () => {
    stack = await startBillingStack({ TIERS_FILE: writeTestTiers(TIERS) });
  });
  afterAll(async () => {
    await stack.close();
  });

  it('rolls seconds up, sends them to an audio-seconds meter once, and bills them per second as Stripe does', async () => {
    const org = await createOrg(stack.prisma, 'audio');
    const enabled = await stack.setup.enableOrg(org.id);
    // whisper: input, output, audio; the model without audio_per_minute: input, output
    const prices = [...stack.fake.state.prices.values()].map((p) => p.unit_amount_decimal).sort();
    expect(prices).toEqual(['0.00005', '0.00005', '0.0001', '0.0001', '0.01'].sort());
    const meters = [...stack.fake.state.meters.values()];
    expect(meters.filter((m) => m.event_name.startsWith('spot_audio_seconds_'))).toHaveLength(1);
    expect(meters.find((m) => m.event_name.startsWith('spot_audio_seconds_'))!.display_name).toBe('whisper on t-spot, audio seconds');

    const keyId = randomUUID();
    const event = (model: string, audioSeconds: number, prompt = 0, completion = 0) => ({
      requestId: `audio-${randomUUID()}`,
      createdAt: new Date(),
      orgId: org.id,
      keyId,
      model,
      tier: 't-spot',
      promptTokens: prompt,
      completionTokens: completion,
      cachedTokens: 0,
      audioSeconds,
      ttftMs: null,
      durationMs: 10,
      status: 200,
      estimated: false,
      costNanos: audioSeconds * 100_000,
    });
    // 100 minutes and a stream billed in tokens; audio of a model without an audio price costs nothing
    const events = [...Array.from({ length: 100 }, () => event('whisper', 60)), event('whisper', 0, 6, 3), event('whisper-free-audio', 120)];
    await new UsageEventsRepository(stack.prisma).insertMany(events);
    await stack.rollup.runPass();
    const rollups = await stack.prisma.usageRollup.findMany({ where: { orgId: org.id }, orderBy: { model: 'asc' } });
    expect(rollups.map((r) => [r.model, Number(r.audioSeconds), Number(r.promptTokens)])).toEqual([
      ['whisper', 6000, 6],
      ['whisper-free-audio', 120, 0],
    ]);
    for (let i = 0; i < 30 && (await stack.sync.runPass()).pending > 0; i++) await new Promise((r) => setTimeout(r, 200));
    const sent = stack.fake.state.meterEvents.filter((e) => e.payload.stripe_customer_id === enabled.customerId);
    const audio = sent.filter((e) => e.event_name.startsWith('spot_audio_seconds_'));
    expect(audio.map((e) => Number(e.payload.value))).toEqual([6000]);
    expect(sent.reduce((s, e) => s + Number(e.payload.value), 0)).toBe(6000 + 6 + 3);
    // a second pass sends nothing more
    await stack.rollup.runPass();
    await stack.sync.runPass();
    expect(stack.fake.state.meterEvents.filter((e) => e.payload.stripe_customer_id === enabled.customerId)).toHaveLength(sent.length);

    const row = await stack.prisma.org.findUniqueOrThrow({ where: { id: org.id } });
    const bill = await stack.bills.bill(row, new Date().toISOString().slice(0, 7));
    const line = bill.lines.find((l) => l.direction === 'audio')!;
    // 6000 s at 0.01 cent a second: 60 cents (0.006 $/min x 100 min)
    expect(line).toMatchObject({ model: 'whisper', tokens: 6000, unitAmountDecimal: '0.01', amountCents: 60 });
    expect(bill.stripe?.totalCents).toBe(bill.totalCents);
  });
});
