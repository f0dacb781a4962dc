/** Live counters of the sim (read them at any time; they change as requests run). */
export interface SimStats {
  /** Inference requests received (every path in INFERENCE_PATHS), valid or not. */
  requests: number;
  /** Requests generating right now (from the end of any fault delay to the last byte). */
  running: number;
  /** Requests held before generation (fault delay / slow-start). */
  waiting: number;
  /** Clients that disconnected before their response finished. */
  aborted: number;
  /** Successful responses fully written. */
  completed: number;
  /** Error responses or error frames sent (validation errors, injected errors). */
  failed: number;
  /** Connections the sim destroyed on purpose (`drop` faults). */
  dropped: number;
  /** Times a `crash` fault killed the engine. */
  crashes: number;
  /** Prompt tokens of requests that started generating. */
  promptTokens: number;
  /** Tokens actually emitted (partial streams count what was sent). */
  generationTokens: number;
}

export function emptyStats(): SimStats {
  return {
    requests: 0, running: 0, waiting: 0, aborted: 0, completed: 0, failed: 0, dropped: 0, crashes: 0,
    promptTokens: 0, generationTokens: 0,
  };
}

/** Per served model, the figures vLLM exports on /metrics. */
export class ModelCounters {
  running = 0;
  waiting = 0;
  promptTokens = 0;
  generationTokens = 0;
  readonly finished = new Map<string, number>();
  readonly label: string;
  constructor(readonly model: string) {
    this.label = `model_name="${model.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}",engine="0"`;
  }
  finish(reason: string): void {
    this.finished.set(reason, (this.finished.get(reason) ?? 0) + 1);
  }
}

/** Python prometheus_client prints samples as floats: 0 -> "0.0". */
function num(n: number): string {
  return Number.isInteger(n) ? `${n}.0` : String(n);
}

/** Prometheus text exposition in vLLM v1's metric names and labels. */
export function renderMetrics(models: Iterable<ModelCounters>): string {
  const list = [...models];
  const out: string[] = [];
  const family = (name: string, type: string, help: string, value: (m: ModelCounters) => number): void => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const m of list) out.push(`${name}{${m.label}} ${num(value(m))}`);
  };
  family('vllm:num_requests_running', 'gauge', 'Number of requests in model execution batches.', (m) => m.running);
  family('vllm:num_requests_waiting', 'gauge', 'Number of requests waiting to be processed.', (m) => m.waiting);
  family('vllm:kv_cache_usage_perc', 'gauge', 'KV-cache usage. 1 means 100 percent usage.', () => 0);
  family('vllm:prompt_tokens_total', 'counter', 'Number of prefill tokens processed.', (m) => m.promptTokens);
  family('vllm:generation_tokens_total', 'counter', 'Number of generation tokens processed.', (m) => m.generationTokens);
  out.push(
    '# HELP vllm:request_success_total Count of successfully processed requests.',
    '# TYPE vllm:request_success_total counter',
  );
  for (const m of list) {
    for (const [reason, n] of m.finished) {
      out.push(`vllm:request_success_total{${m.label},finished_reason="${reason}"} ${num(n)}`);
    }
  }
  return `${out.join('\n')}\n`;
}
