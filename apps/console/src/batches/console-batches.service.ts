import { Readable } from 'node:stream';
import { Injectable } from '@nestjs/common';
import { ApiKeysRepository, BatchesRepository, type BatchRow, CANCELLABLE_BATCH_STATUSES, FilesRepository, type User } from '@spot/db';
import { conflict, invalid, notFound } from '../errors/console.errors';
import { OrgAccessService } from '../orgs/org-access.service';

/** The files of a batch the console downloads: its input, and the output and error files it wrote. */
export const BATCH_FILES = ['input', 'output', 'errors'] as const;
export type BatchFileKind = (typeof BATCH_FILES)[number];

const BATCH_ID = /^batch_[0-9A-Za-z]{1,64}$/;
const PAGE_DEFAULT = 25;
const PAGE_MAX = 100;

/** A batch as the console shows it (times in ISO 8601, money in USD). */
export interface BatchView {
  id: string;
  status: string;
  endpoint: string;
  /** The key that created it (its lines are billed to it), by name and prefix; null if the key row is gone. */
  key: { id: string; name: string; prefix: string } | null;
  requestCounts: { total: number; completed: number; failed: number };
  /** Lines with a result (completed + failed). */
  done: number;
  /** What the finished lines cost so far, at the batch price. */
  costUsd: number;
  /** The model its lines name (null until a line is billed). */
  model: string | null;
  /** Tokens of the billed lines so far. */
  usage: { inputTokens: number; cachedTokens: number; outputTokens: number; reasoningTokens: number; totalTokens: number };
  metadata: Record<string, string> | null;
  /** Why validation failed (OpenAI's `errors.data`), empty otherwise. */
  errors: Array<{ code: string; message: string; line: number | null }>;
  inputFileId: string;
  outputFileId: string | null;
  errorFileId: string | null;
  createdAt: string;
  inProgressAt: string | null;
  expiresAt: string;
  /** When it ended, whichever way (completed, failed, expired, cancelled); null while it runs. */
  finishedAt: string | null;
  cancellingAt: string | null;
  /** Whether a cancel would stop it now. */
  cancellable: boolean;
}

/** One page of an org's batches, newest first; `nextAfter` is the cursor of the next (older) page. */
export interface BatchPage {
  data: BatchView[];
  hasMore: boolean;
  nextAfter: string | null;
}

/** A file to send: its name, size and bytes, read from Postgres one chunk row at a time as the client takes them. */
export interface BatchDownload {
  filename: string;
  bytes: number;
  body: Readable;
}

const iso = (d: Date | null): string | null => d?.toISOString() ?? null;

function validationErrors(raw: unknown): BatchView['errors'] {
  const data = (raw as { data?: unknown } | null)?.data;
  if (!Array.isArray(data)) return [];
  return data.map((e: { code?: unknown; message?: unknown; line?: unknown }) => ({
    code: String(e.code ?? ''),
    message: String(e.message ?? ''),
    line: typeof e.line === 'number' ? e.line : null,
  }));
}

export function batchView(b: BatchRow, keys: ReadonlyMap<string, { id: string; name: string; prefix: string }>): BatchView {
  return {
    id: b.id,
    status: b.status,
    endpoint: b.endpoint,
    key: keys.get(b.keyId) ?? null,
    requestCounts: { total: b.total, completed: b.completed, failed: b.failed },
    done: b.completed + b.failed,
    costUsd: Number(b.costNanos) / 1e9,
    model: b.model,
    usage: {
      inputTokens: Number(b.inputTokens),
      cachedTokens: Number(b.cachedTokens),
      outputTokens: Number(b.outputTokens),
      reasoningTokens: Number(b.reasoningTokens),
      totalTokens: Number(b.inputTokens + b.outputTokens),
    },
    metadata: (b.metadata as Record<string, string> | null) ?? null,
    errors: validationErrors(b.errors),
    inputFileId: b.inputFileId,
    outputFileId: b.outputFileId,
    errorFileId: b.errorFileId,
    createdAt: b.createdAt.toISOString(),
    inProgressAt: iso(b.inProgressAt),
    expiresAt: b.expiresAt.toISOString(),
    finishedAt: iso(b.completedAt ?? b.failedAt ?? b.expiredAt ?? b.cancelledAt),
    cancellingAt: iso(b.cancellingAt),
    cancellable: CANCELLABLE_BATCH_STATUSES.includes(b.status),
  };
}

/**
 * An org's batches in the console: the list with progress and cost, cancel, and the downloads of their files.
 * Every member may see and cancel the org's batches (any of the org's API keys can do both through the API), and
 * another org's batch (or file) is a 404 whatever its id.
 */
@Injectable()
export class ConsoleBatchesService {
  constructor(
    private readonly access: OrgAccessService,
    private readonly batches: BatchesRepository,
    private readonly files: FilesRepository,
    private readonly keys: ApiKeysRepository,
  ) {}

  async list(user: User, slug: string, q: { limit?: string; after?: string }): Promise<BatchPage> {
    const { org } = await this.access.requireRole(user.id, slug, 'member');
    const limit = q.limit === undefined || q.limit === '' ? PAGE_DEFAULT : Number(q.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > PAGE_MAX) throw invalid('limit', `expected a whole number from 1 to ${PAGE_MAX}`);
    const after = q.after === undefined || q.after === '' ? undefined : q.after;
    if (after !== undefined && !BATCH_ID.test(after)) throw invalid('after', 'expected a batch id');
    const [rows, keys] = await Promise.all([this.batches.list(org.id, limit, after), this.keyNames(org.id)]);
    const data = rows.slice(0, limit).map((b) => batchView(b, keys));
    const hasMore = rows.length > limit;
    return { data, hasMore, nextAfter: hasMore ? data[data.length - 1].id : null };
  }

  async get(user: User, slug: string, id: string): Promise<BatchView> {
    const { org } = await this.access.requireRole(user.id, slug, 'member');
    const [row, keys] = await Promise.all([this.row(org.id, id), this.keyNames(org.id)]);
    return batchView(row, keys);
  }

  /** Asks the worker to stop the batch (`cancelling`, then `cancelled` once the lines running have finished). */
  async cancel(user: User, slug: string, id: string): Promise<BatchView> {
    const { org } = await this.access.requireRole(user.id, slug, 'member');
    const row = BATCH_ID.test(id) ? await this.batches.requestCancel(org.id, id) : null;
    if (row === null) throw notFound(`No batch "${id.slice(0, 64)}" in this org.`);
    if (row.status !== 'cancelling' && row.status !== 'cancelled') throw conflict(`A batch that is ${row.status} cannot be cancelled.`, 'batch_not_cancellable');
    return batchView(row, await this.keyNames(org.id));
  }

  /** The batch's input, output or error file, streamed a chunk row at a time. */
  async download(user: User, slug: string, id: string, which: string): Promise<BatchDownload> {
    const { org } = await this.access.requireRole(user.id, slug, 'member');
    if (!(BATCH_FILES as readonly string[]).includes(which)) throw notFound();
    const batch = await this.row(org.id, id);
    const fileId = which === 'input' ? batch.inputFileId : which === 'output' ? batch.outputFileId : batch.errorFileId;
    // the file row is the org's own too (an input file deleted since is gone)
    const file = fileId === null ? null : await this.files.find(org.id, fileId);
    if (file === null) throw notFound(`Batch ${batch.id} has no ${which === 'errors' ? 'error' : which} file${which === 'input' ? ' any more' : ''}.`);
    const files = this.files;
    async function* chunks(): AsyncGenerator<Buffer> {
      for (let seq = 0; ; seq++) {
        const data = await files.chunk(file!.id, seq);
        if (data === null) return;
        yield Buffer.from(data.buffer, data.byteOffset, data.byteLength);
      }
    }
    return { filename: which === 'input' ? file.filename : `${batch.id}_${which === 'errors' ? 'error' : 'output'}.jsonl`, bytes: Number(file.bytes), body: Readable.from(chunks()) };
  }

  private async row(orgId: string, id: string): Promise<BatchRow> {
    const row = BATCH_ID.test(id) ? await this.batches.find(orgId, id) : null;
    if (row === null) throw notFound(`No batch "${id.slice(0, 64)}" in this org.`);
    return row;
  }

  private async keyNames(orgId: string): Promise<Map<string, { id: string; name: string; prefix: string }>> {
    return new Map((await this.keys.listByOrg(orgId)).map((k) => [k.id, { id: k.id, name: k.name, prefix: k.prefix }]));
  }
}
