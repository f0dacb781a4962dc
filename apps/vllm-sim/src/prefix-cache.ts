import { createHash } from 'node:crypto';
import { contentWordList, textPromptTokens, wordsOf } from './sim-tokens';

/** vLLM's default KV-cache block size: prefix-cache hits come in whole blocks. */
export const BLOCK_SIZE = 16;
/** Past this many remembered blocks the cache starts over (a sim has no memory pressure to evict by). */
const MAX_BLOCKS = 200_000;

/**
 * vLLM's automatic prefix caching, reduced to its accounting: a prompt's full blocks of tokens are hashed in a
 * chain (a block's key depends on every block before it); a later prompt reuses the leading blocks already
 * seen, and never its last token (vLLM always recomputes at least one), so a hit is a multiple of 16.
 */
export class PrefixCache {
  private readonly blocks = new Set<string>();

  /** The cached tokens of `tokens` for `model`, then remembers its blocks for the next request. */
  admit(model: string, tokens: readonly (string | number)[]): number {
    if (this.blocks.size > MAX_BLOCKS) this.blocks.clear();
    const full = Math.floor(tokens.length / BLOCK_SIZE);
    let key = model;
    let hits = 0;
    let missed = false;
    for (let b = 0; b < full; b++) {
      const h = createHash('sha1').update(key).update('\u0000');
      for (let i = b * BLOCK_SIZE; i < (b + 1) * BLOCK_SIZE; i++) h.update(String(tokens[i])).update('\u0001');
      key = h.digest('hex');
      if (!missed && this.blocks.has(key)) hits++;
      else {
        missed = true;
        this.blocks.add(key);
      }
    }
    const usable = Math.floor((tokens.length - 1) / BLOCK_SIZE) * BLOCK_SIZE;
    return Math.max(0, Math.min(hits * BLOCK_SIZE, usable));
  }

  clear(): void {
    this.blocks.clear();
  }
}

/**
 * The rendered chat prompt as tokens, as many as chatPromptTokens counts: a BOS, 8 per tool, per message
 * (start, role, content marker, words, end), then the 2-token generation prompt.
 */
export function chatPromptTokenList(messages: readonly unknown[], toolNames: readonly string[]): string[] {
  const out = ['<|bos|>'];
  for (const name of toolNames) out.push('<|tool|>', name, '<|t|>', '<|t|>', '<|t|>', '<|t|>', '<|t|>', '<|/tool|>');
  for (const m of messages) {
    const msg = (m ?? {}) as { role?: unknown; content?: unknown; tool_calls?: unknown };
    out.push('<|start|>', String(msg.role), '<|content|>');
    for (const w of contentWordList(msg.content)) out.push(w);
    if (Array.isArray(msg.tool_calls)) {
      for (const call of msg.tool_calls) {
        const args = (call as { function?: { arguments?: unknown } } | null)?.function?.arguments;
        if (typeof args === 'string') for (const w of wordsOf(args)) out.push(w);
      }
    }
    out.push('<|end|>');
  }
  out.push('<|assistant|>', '<|gen|>');
  return out;
}

/** A completions / pooling prompt as tokens: BOS + words, or the token ids themselves. */
export function textPromptTokenList(prompt: string | readonly number[]): (string | number)[] {
  const list = typeof prompt === 'string' ? ['<|bos|>', ...wordsOf(prompt)] : [...prompt];
  if (list.length !== textPromptTokens(prompt)) throw new Error('textPromptTokenList: count mismatch');
  return list;
}
