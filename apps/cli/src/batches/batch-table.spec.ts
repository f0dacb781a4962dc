import { batchTable, type ListedBatch, usdOfNanos } from './batch-table';

const batch = (over: Partial<ListedBatch>): ListedBatch => ({
  id: 'batch_a',
  orgSlug: 'acme',
  status: 'in_progress',
  endpoint: '/v1/chat/completions',
  total: 3,
  completed: 1,
  failed: 0,
  costNanos: 1_234n,
  createdAt: new Date('2026-12-01T10:15:30Z'),
  finishedAt: null,
  ...over,
});

describe('batchTable', () => {
  it('prints a header and one padded row per batch: progress as done/total and a share, cost in USD', () => {
    const lines = batchTable([
      batch({}),
      batch({ id: 'batch_longer_id', orgSlug: 'o', status: 'completed', total: 200, completed: 199, failed: 1, costNanos: 2_500_000_000n, finishedAt: new Date('2026-12-01T11:00:00Z') }),
      batch({ id: 'batch_v', status: 'validating', total: 0, completed: 0, costNanos: 0n }),
    ]);
    expect(lines).toEqual([
      'BATCH            ORG   STATUS       PROGRESS      FAILED  ENDPOINT              CREATED            FINISHED           COST',
      'batch_a          acme  in_progress  1/3 33%       0       /v1/chat/completions  2026-12-01 10:15Z  -                  $0.000001',
      'batch_longer_id  o     completed    200/200 100%  1       /v1/chat/completions  2026-12-01 10:15Z  2026-12-01 11:00Z  $2.500000',
      'batch_v          acme  validating   -             0       /v1/chat/completions  2026-12-01 10:15Z  -                  $0.000000',
    ]);
  });

  it('rounds nano-USD to the micro-dollar', () => {
    expect(usdOfNanos(0n)).toBe('$0.000000');
    expect(usdOfNanos(499n)).toBe('$0.000000');
    expect(usdOfNanos(500n)).toBe('$0.000001');
    expect(usdOfNanos(12_345_678_901n)).toBe('$12.345679');
  });
});
