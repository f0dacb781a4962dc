import type { BatchRow } from '@spot/db';

/** The endpoints a batch may name, and the proxied operation each line runs as. */
export const BATCH_ENDPOINTS = {
  '/v1/chat/completions': 'chat',
  '/v1/completions': 'completions',
  '/v1/embeddings': 'embeddings',
  '/v1/responses': 'responses',
} as const;
export type BatchEndpoint = keyof typeof BATCH_ENDPOINTS;

const secs = (d: Date | null): number | null => (d === null ? null : Math.floor(d.getTime() / 1000));

/**
 * A batch as OpenAI's API shows it (every field, null where it has no value yet). `model` is the model its lines
 * name and `usage` the tokens of its billed lines so far (both counted as each line is recorded).
 */
export function toBatchObject(b: BatchRow): Record<string, unknown> {
  return {
    id: b.id,
    object: 'batch',
    endpoint: b.endpoint,
    errors: b.errors ?? null,
    input_file_id: b.inputFileId,
    completion_window: b.completionWindow,
    status: b.status,
    output_file_id: b.outputFileId,
    error_file_id: b.errorFileId,
    created_at: secs(b.createdAt),
    in_progress_at: secs(b.inProgressAt),
    expires_at: secs(b.expiresAt),
    finalizing_at: secs(b.finalizingAt),
    completed_at: secs(b.completedAt),
    failed_at: secs(b.failedAt),
    expired_at: secs(b.expiredAt),
    cancelling_at: secs(b.cancellingAt),
    cancelled_at: secs(b.cancelledAt),
    request_counts: { total: b.total, completed: b.completed, failed: b.failed },
    metadata: b.metadata ?? null,
    model: b.model,
    usage: {
      input_tokens: Number(b.inputTokens),
      input_tokens_details: { cached_tokens: Number(b.cachedTokens) },
      output_tokens: Number(b.outputTokens),
      output_tokens_details: { reasoning_tokens: Number(b.reasoningTokens) },
      total_tokens: Number(b.inputTokens + b.outputTokens),
    },
  };
}
