/**
 * The sim's stand-in for a tokenizer and a model: deterministic, cheap, and exact, so tests can predict
 * every usage figure. A generated token is a word with a leading space; prompt tokens are words.
 */

const WORDS = (
  'lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et ' +
  'dolore magna aliqua enim ad minim veniam quis nostrud exercitation ullamco laboris nisi aliquip ex ea ' +
  'commodo consequat duis aute irure in reprehenderit voluptate velit esse cillum fugiat nulla pariatur'
).split(' ');

/** JSON-encoded token texts, built once: the streaming loop only concatenates them. */
const WORD_JSON: readonly string[] = WORDS.map((w) => JSON.stringify(` ${w}`));
const WORD_TEXT: readonly string[] = WORDS.map((w) => ` ${w}`);

/** Tokens a chat prompt costs on top of its words, per message (role markers) and once (generation prompt). */
export const MESSAGE_OVERHEAD_TOKENS = 4;
export const CHAT_PROMPT_OVERHEAD_TOKENS = 3;
export const TOOL_OVERHEAD_TOKENS = 8;

function isSpace(c: number): boolean {
  return c === 32 || (c >= 9 && c <= 13) || c === 160;
}

/** The whitespace-separated words of `s` (what countWords counts). */
export function wordsOf(s: string): string[] {
  const out: string[] = [];
  let start = -1;
  for (let i = 0; i < s.length; i++) {
    if (isSpace(s.charCodeAt(i))) {
      if (start >= 0) out.push(s.slice(start, i));
      start = -1;
    } else if (start < 0) start = i;
  }
  if (start >= 0) out.push(s.slice(start));
  return out;
}

/** The first `count` tokens of the sim's sequence from `offset`, as text (each token a word with a leading space). */
export function sequenceText(count: number, offset = 0): string {
  let s = '';
  for (let k = 0; k < count; k++) s += WORD_TEXT[(offset + k) % WORD_TEXT.length]!;
  return s;
}

/**
 * How many tokens of the sim's sequence (from `offset`) `prompt` already ends with, up to `max`: a completions
 * prompt that carries the delivered text of an interrupted generation continues it. 0 when it ends with none.
 */
export function deliveredSuffix(prompt: string, max: number, offset = 0): number {
  const trimmed = prompt.replace(/\s+$/, '');
  for (let k = max; k > 0; k--) {
    const tail = sequenceText(k, offset);
    if (trimmed.endsWith(tail)) return k;
    // The text may also open the prompt without its leading space.
    if (trimmed === tail.slice(1)) return k;
  }
  return 0;
}

/** Number of whitespace-separated words in `s`. */
export function countWords(s: string): number {
  let n = 0;
  let inWord = false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const space = c === 32 || (c >= 9 && c <= 13) || c === 160;
    if (space) inWord = false;
    else if (!inWord) {
      inWord = true;
      n++;
    }
  }
  return n;
}

/** Words in a message `content`: a string, or an array of parts of which `text` parts count. */
export function contentWords(content: unknown): number {
  if (typeof content === 'string') return countWords(content);
  if (!Array.isArray(content)) return 0;
  let n = 0;
  for (const part of content) {
    if (typeof part === 'string') n += countWords(part);
    else if (part !== null && typeof part === 'object' && typeof (part as { text?: unknown }).text === 'string') {
      n += countWords((part as { text: string }).text);
    }
  }
  return n;
}

/** The words of a message `content` (what contentWords counts). */
export function contentWordList(content: unknown): string[] {
  if (typeof content === 'string') return wordsOf(content);
  if (!Array.isArray(content)) return [];
  const out: string[] = [];
  for (const part of content) {
    if (typeof part === 'string') out.push(...wordsOf(part));
    else if (part !== null && typeof part === 'object' && typeof (part as { text?: unknown }).text === 'string') {
      out.push(...wordsOf((part as { text: string }).text));
    }
  }
  return out;
}

/**
 * Prompt tokens of a chat request: 3 + sum over messages of (4 + words of content + words of tool-call
 * arguments) + 8 per declared tool.
 */
export function chatPromptTokens(messages: readonly unknown[], toolCount: number): number {
  let n = CHAT_PROMPT_OVERHEAD_TOKENS + TOOL_OVERHEAD_TOKENS * toolCount;
  for (const m of messages) {
    n += MESSAGE_OVERHEAD_TOKENS;
    if (m === null || typeof m !== 'object') continue;
    const msg = m as { content?: unknown; tool_calls?: unknown };
    n += contentWords(msg.content);
    if (Array.isArray(msg.tool_calls)) {
      for (const call of msg.tool_calls) {
        const args = (call as { function?: { arguments?: unknown } } | null)?.function?.arguments;
        if (typeof args === 'string') n += countWords(args);
      }
    }
  }
  return n;
}

/** Prompt tokens of a completions / embeddings input: words + 1 (BOS), or the length of a token array. */
export function textPromptTokens(prompt: string | readonly number[]): number {
  return typeof prompt === 'string' ? countWords(prompt) + 1 : prompt.length;
}

/** What one choice generates: `count` tokens (after any max_tokens cut) and why it stopped. */
export interface ChoiceOutput {
  readonly count: number;
  readonly finishReason: 'stop' | 'length' | 'tool_calls';
  /** The JSON-encoded text of token `k` (content, or tool-call argument fragment for tool outputs). */
  tokenJson(k: number): string;
  /** The whole generated text (content, or tool-call arguments). */
  text(): string;
  /** Set when the choice answers with a tool call; token 0 then carries the name, not text. */
  readonly toolCall: { readonly id: string; readonly name: string } | null;
}

/**
 * Plain text: `count` words starting at `offset` in the word list (choice i starts elsewhere than choice 0).
 * `skip` tokens of the sequence were already delivered (a continued generation): the output resumes after
 * them, and `cap` (max_tokens) counts only the new ones.
 */
export class WordOutput implements ChoiceOutput {
  readonly toolCall = null;
  readonly finishReason: 'stop' | 'length';
  readonly count: number;
  private readonly offset: number;
  constructor(natural: number, cap: number, offset: number, skip = 0) {
    const left = Math.max(0, natural - skip);
    this.count = Math.min(left, cap);
    this.finishReason = cap < left ? 'length' : 'stop';
    this.offset = offset + skip;
  }
  tokenJson(k: number): string {
    return WORD_JSON[(this.offset + k) % WORD_JSON.length]!;
  }
  text(): string {
    return sequenceText(this.count, this.offset);
  }
}

/**
 * Text made of given pieces (JSON content), or a tool call whose arguments are the pieces. Content can resume
 * after `skip` pieces already delivered (a continued generation).
 */
export class PieceOutput implements ChoiceOutput {
  readonly count: number;
  readonly finishReason: 'stop' | 'length' | 'tool_calls';
  private readonly lead: number;
  private readonly pieces: readonly string[];
  constructor(
    pieces: readonly string[],
    cap: number,
    readonly toolCall: { readonly id: string; readonly name: string } | null = null,
    skip = 0,
  ) {
    // A tool call spends one token on its name before the arguments start.
    this.lead = toolCall ? 1 : 0;
    this.pieces = toolCall ? pieces : pieces.slice(skip);
    const natural = this.pieces.length + this.lead;
    this.count = Math.min(natural, cap);
    this.finishReason = cap < natural ? 'length' : toolCall ? 'tool_calls' : 'stop';
  }
  tokenJson(k: number): string {
    return k < this.lead ? '""' : JSON.stringify(this.pieces[k - this.lead]);
  }
  text(): string {
    return this.pieces.slice(0, Math.max(0, this.count - this.lead)).join('');
  }
}

/** How many leading `pieces` the delivered `prefix` holds (the longest run of whole pieces it starts with). */
export function deliveredPieces(pieces: readonly string[], prefix: string): number {
  let at = 0;
  let k = 0;
  while (k < pieces.length && prefix.startsWith(pieces[k]!, at)) at += pieces[k++]!.length;
  return k;
}

/** Splits `s` into tokens of up to `size` code points. */
export function splitPieces(s: string, size = 4): string[] {
  const out: string[] = [];
  let cur = '';
  let n = 0;
  for (const ch of s) {
    cur += ch;
    if (++n === size) {
      out.push(cur);
      cur = '';
      n = 0;
    }
  }
  if (cur) out.push(cur);
  return out;
}

/** `count` generated words, for content that embeds text (e.g. JSON mode). */
export function words(count: number, offset = 0): string {
  const out: string[] = [];
  for (let k = 0; k < count; k++) out.push(WORDS[(offset + k) % WORDS.length]!);
  return out.join(' ');
}
