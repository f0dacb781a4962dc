import type { Exchange } from './exchange';

/** The text of a streamed answer, step by step (a step = one token for each unfinished choice). */
export interface StreamBody {
  readonly steps: number;
  /** SSE text sent together with step 0 (chat: the role chunks). */
  head(): string;
  /** SSE text of step `k`. */
  step(k: number): string;
  /** Tokens emitted in step `k`, summed over choices. */
  tokensIn(k: number): number;
  /** SSE text after the last step (usage chunk if asked, then `[DONE]`). */
  tail(): string;
  readonly finishReason: string;
}

/** Tokens emitted in step `k` when choice i emits `outputs[i].count` tokens, one per step. */
export function tokensInStep(outputs: readonly { readonly count: number }[], k: number): number {
  let n = 0;
  for (const o of outputs) if (k < o.count) n++;
  return n;
}

/** Completion tokens of all choices. */
export function completionTokens(outputs: readonly { readonly count: number }[]): number {
  let n = 0;
  for (const o of outputs) n += o.count;
  return n;
}

/** What an injected mid-generation fault does once `afterTokens` steps are out. */
export type Cut =
  | { readonly kind: 'error'; readonly afterTokens: number; readonly frame: (sent: number) => string; readonly unary: () => void }
  | { readonly kind: 'drop'; readonly afterTokens: number }
  /** Nothing more is sent once `afterTokens` steps are out; the connection stays open until the client leaves. */
  | { readonly kind: 'stall'; readonly afterTokens: number }
  /** The engine dies (every connection cut, the port closed) once `afterTokens` steps are out. */
  | { readonly kind: 'crash'; readonly afterTokens: number; readonly crash: () => void };

export interface Timing {
  readonly ttftMs: number;
  readonly itlMs: number;
}

/**
 * Streams `body`: headers at once, the first token after `ttftMs`, the next ones every `itlMs`. With both
 * at 0 the whole stream goes out in one write, which is what keeps the sim cheap under load.
 */
export function runStream(ex: Exchange, body: StreamBody, timing: Timing, cut: Cut | undefined): void {
  if (cut?.kind === 'drop' && cut.afterTokens === 0) {
    ex.drop();
    return;
  }
  const limit = cut ? Math.min(cut.afterTokens, body.steps) : body.steps;
  ex.sseHead();
  const emit = (k: number): string => {
    ex.tokens(body.tokensIn(k));
    return k === 0 ? body.head() + body.step(0) : body.step(k);
  };
  const finish = (prefix: string): void => {
    if (!cut) ex.succeed(prefix + body.tail(), body.finishReason);
    else if (cut.kind === 'error') ex.failStream(prefix + cut.frame(limit));
    else if (cut.kind === 'drop') ex.drop(prefix);
    else if (cut.kind === 'stall') ex.write(prefix);
    else ex.die(prefix, cut.crash);
  };
  const { ttftMs, itlMs } = timing;
  if (itlMs === 0 || limit <= 1) {
    const all = (): void => {
      // Nothing to generate (a continuation that was already complete): the head still goes out.
      let s = limit === 0 && !cut ? body.head() : '';
      for (let k = 0; k < limit; k++) s += emit(k);
      finish(s);
    };
    if (ttftMs === 0) all();
    else ex.after(ttftMs, all);
    return;
  }
  let k = 0;
  const tick = (): void => {
    const s = emit(k++);
    if (k === limit) finish(s);
    else {
      ex.write(s);
      ex.after(itlMs, tick);
    }
  };
  if (ttftMs === 0) tick();
  else ex.after(ttftMs, tick);
}

/** Answers after the time the generation would take; a cut fires after its share of that time. */
export function runUnary(
  ex: Exchange,
  steps: number,
  tokensIn: (k: number) => number,
  timing: Timing,
  cut: Cut | undefined,
  respond: () => void,
): void {
  const limit = cut ? Math.min(cut.afterTokens, steps) : steps;
  const ms = limit > 0 ? timing.ttftMs + timing.itlMs * (limit - 1) : 0;
  const done = (): void => {
    for (let k = 0; k < limit; k++) ex.tokens(tokensIn(k));
    if (!cut) respond();
    else if (cut.kind === 'error') cut.unary();
    else if (cut.kind === 'drop') ex.drop();
    else if (cut.kind === 'stall') return;
    else ex.die('', cut.crash);
  };
  if (ms === 0) done();
  else ex.after(ms, done);
}
