import { z } from 'zod';

/** Inference paths a fault applies to when it names no `path`. */
export const INFERENCE_PATHS: readonly string[] = [
  '/v1/chat/completions',
  '/v1/completions',
  '/v1/embeddings',
  '/v1/responses',
  '/v1/messages',
  '/v1/messages/count_tokens',
  '/v1/rerank',
  '/rerank',
  '/v2/rerank',
  '/v1/score',
  '/score',
  '/v1/audio/transcriptions',
  '/v1/audio/translations',
];

const count = z.union([z.number().int().positive(), z.literal('always')]).optional();
const match = {
  /** Exact request path; without it the fault applies to the inference endpoints only. */
  path: z.string().startsWith('/').optional(),
  /** Served model name the request asks for. */
  model: z.string().optional(),
  /** How many matching requests the fault applies to (default 1); `'always'` until cleared. */
  count,
  /** Extra delay before anything is sent (the request counts as waiting meanwhile). */
  delayMs: z.number().int().nonnegative().optional(),
  /** Only requests whose raw body contains this text (e.g. a marker in a prompt). */
  bodyContains: z.string().min(1).optional(),
};
const errorFields = {
  status: z.number().int().min(400).max(599).optional(),
  message: z.string().optional(),
  /** vLLM `type`; defaults to the Python-style class name of the status. */
  type: z.string().optional(),
};

export const faultSpecSchema = z.discriminatedUnion('kind', [
  z.object({
    kind: z.literal('error-before'),
    ...match,
    ...errorFields,
    status: z.number().int().min(400).max(599),
    headers: z.record(z.string(), z.string()).optional(),
  }),
  z.object({
    kind: z.literal('error-after'),
    ...match,
    ...errorFields,
    afterTokens: z.number().int().nonnegative(),
    /** vLLM still sends `data: [DONE]` after its error frame; `false` ends the stream right after it. */
    done: z.boolean().optional(),
  }),
  z.object({ kind: z.literal('drop'), ...match, afterTokens: z.number().int().nonnegative() }),
  z.object({ kind: z.literal('slow-start'), ...match, delayMs: z.number().int().nonnegative() }),
  /** Generation stops once this many tokens are out, the connection left open: an engine wedged mid-stream. */
  z.object({ kind: z.literal('stall'), ...match, afterTokens: z.number().int().nonnegative() }),
  z.object({ kind: z.literal('hang'), ...match }),
  /**
   * The engine dies on this request (a poisonous input that crashes the process): every connection is cut and
   * the port stops listening, as when vLLM's process exits. A sim run as a process exits with status 1.
   */
  z.object({
    kind: z.literal('crash'),
    ...match,
    /** Die mid-generation once this many tokens are out (a spot engine lost mid-stream); absent or 0: at once. */
    afterTokens: z.number().int().nonnegative().optional(),
  }),
]);

/** A fault to inject into the next matching request(s). */
export type FaultSpec = z.input<typeof faultSpecSchema>;
export type ParsedFault = z.output<typeof faultSpecSchema>;

/** A queued fault with what is left of its count. */
export interface QueuedFault {
  readonly spec: ParsedFault;
  remaining: number;
}

/**
 * A FIFO of faults. Each inference request takes the first fault that matches its path and model, which
 * spends one unit of that fault's count.
 */
export class FaultController {
  private queue: QueuedFault[] = [];

  /** Queues faults (validated; throws a ZodError on a bad spec). Returns the number queued. */
  add(...specs: FaultSpec[]): number {
    for (const raw of specs) {
      const spec = faultSpecSchema.parse(raw);
      const n = spec.count ?? 1;
      this.queue.push({ spec, remaining: n === 'always' ? Infinity : n });
    }
    return specs.length;
  }

  /** Removes every queued fault; returns how many there were. */
  clear(): number {
    const n = this.queue.length;
    this.queue = [];
    return n;
  }

  /** The faults still queued. */
  list(): readonly QueuedFault[] {
    return this.queue;
  }

  get size(): number {
    return this.queue.length;
  }

  /** Takes the fault for a request, if any (`body`: the raw request body, text or bytes, for `bodyContains`). */
  take(path: string, model: string | undefined, body?: string | Buffer): ParsedFault | undefined {
    if (this.queue.length === 0) return undefined;
    for (let i = 0; i < this.queue.length; i++) {
      const q = this.queue[i]!;
      const s = q.spec;
      if (s.path !== undefined ? s.path !== path : !INFERENCE_PATHS.includes(path)) continue;
      if (s.model !== undefined && s.model !== model) continue;
      if (s.bodyContains !== undefined && (body === undefined || !body.includes(s.bodyContains))) continue;
      if (--q.remaining <= 0) this.queue.splice(i, 1);
      return s;
    }
    return undefined;
  }
}
