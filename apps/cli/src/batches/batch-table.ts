import type { BatchRow } from '@spot/db';

/** A batch as `batch list` prints it. */
export type ListedBatch = Pick<BatchRow, 'id' | 'status' | 'endpoint' | 'total' | 'completed' | 'failed' | 'costNanos' | 'createdAt'> & {
  orgSlug: string;
  finishedAt: Date | null;
};

const minute = (d: Date | null) => (d === null ? '-' : `${d.toISOString().slice(0, 16).replace('T', ' ')}Z`);

/** completed + failed of total, and the share done; `-` while the input is validated (no total yet). */
function progress(b: ListedBatch): string {
  if (b.total === 0) return '-';
  const done = b.completed + b.failed;
  return `${done}/${b.total} ${Math.floor((done / b.total) * 100)}%`;
}

/** USD from nano-USD, to the micro-dollar (batch lines cost fractions of a cent). */
export function usdOfNanos(nanos: bigint): string {
  const micros = (nanos + 500n) / 1000n;
  return `$${micros / 1_000_000n}.${String(micros % 1_000_000n).padStart(6, '0')}`;
}

/** The batches as a table with a header line, columns padded to their widest cell. */
export function batchTable(batches: readonly ListedBatch[]): string[] {
  const header = ['BATCH', 'ORG', 'STATUS', 'PROGRESS', 'FAILED', 'ENDPOINT', 'CREATED', 'FINISHED', 'COST'];
  const rows = batches.map((b) => [b.id, b.orgSlug, b.status, progress(b), String(b.failed), b.endpoint, minute(b.createdAt), minute(b.finishedAt), usdOfNanos(b.costNanos)]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  return [header, ...rows].map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]))).join('  ').trimEnd());
}
