import { createHash } from 'node:crypto';
import type { FinishedLine } from '@spot/db';

/**
 * The ids of a batch line, derived from (batch, custom_id): the same on every run of the line, so that its
 * usage event (keyed by the request id, as every usage event is) could never be counted twice.
 */
export function lineIds(batchId: string, customId: string): { id: string; requestId: string } {
  const hash = createHash('sha256').update(`${batchId}\n${customId}`).digest('hex').slice(0, 32);
  return { id: `batch_req_${hash}`, requestId: `req_${hash}` };
}

/** OpenAI's `error` of a line that never ran because its batch expired. */
export const EXPIRED_ERROR = { code: 'batch_expired', message: 'This request could not be executed before the completion window expired.' };
/** ... because its batch was cancelled. */
export const CANCELLED_ERROR = { code: 'batch_cancelled', message: 'This request was not executed because the batch was cancelled.' };

/**
 * A finished line as a line of the output file (completed: `response` with the engine's body) or of the error
 * file (an HTTP error: `response` with the error body; never run: `response: null` and `error`), as OpenAI's.
 * The stored body is spliced in as it is (JSON text from the engine), not parsed and serialised again.
 */
export function renderLine(batchId: string, row: FinishedLine): { file: 'output' | 'error'; text: string } {
  const { id, requestId } = lineIds(batchId, row.customId);
  const head = `{"id":${JSON.stringify(id)},"custom_id":${JSON.stringify(row.customId)},`;
  if (row.responseStatus !== null && row.responseBody !== null) {
    const text = `${head}"response":{"status_code":${row.responseStatus},"request_id":${JSON.stringify(requestId)},"body":${row.responseBody}},"error":null}`;
    return { file: row.state === 'completed' ? 'output' : 'error', text };
  }
  return { file: 'error', text: `${head}"response":null,"error":${JSON.stringify(row.error ?? null)}}` };
}

/** The usage of an engine response body of a batch endpoint (chat and completions, embeddings, responses). */
export function usageOfBody(body: unknown): { prompt: number; completion: number; cached: number; reasoning: number } | null {
  if (body === null || typeof body !== 'object') return null;
  const u = (body as { usage?: Record<string, unknown> }).usage;
  if (u === undefined || u === null || typeof u !== 'object') return null;
  const n = (v: unknown) => (typeof v === 'number' && Number.isInteger(v) && v >= 0 ? v : 0);
  if (typeof u.input_tokens === 'number') {
    const details = u.input_tokens_details as { cached_tokens?: unknown } | undefined;
    const out = u.output_tokens_details as { reasoning_tokens?: unknown } | undefined | null;
    return { prompt: n(u.input_tokens), completion: n(u.output_tokens), cached: n(details?.cached_tokens), reasoning: n(out?.reasoning_tokens) };
  }
  const details = u.prompt_tokens_details as { cached_tokens?: unknown } | undefined | null;
  const out = u.completion_tokens_details as { reasoning_tokens?: unknown } | undefined | null;
  return { prompt: n(u.prompt_tokens), completion: n(u.completion_tokens), cached: n(details?.cached_tokens), reasoning: n(out?.reasoning_tokens) };
}
