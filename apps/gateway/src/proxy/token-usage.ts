/** Token counts of one response, as the engine reported them. */
export interface TokenUsage {
  prompt: number;
  completion: number;
  cached: number;
  /** Seconds of audio metered by duration (speech-to-text); absent: none. */
  audioSeconds?: number;
  /** Counted by the gateway, not reported by the engine (absent: reported). */
  estimated?: boolean;
}

function count(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? Math.floor(v) : 0;
}

/** Reads an OpenAI `usage` object; null when it is not one. */
export function usageFromObject(u: unknown): TokenUsage | null {
  if (u === null || typeof u !== 'object') return null;
  const o = u as Record<string, unknown>;
  if (typeof o.prompt_tokens !== 'number') return null;
  const details = o.prompt_tokens_details as Record<string, unknown> | null | undefined;
  return { prompt: count(o.prompt_tokens), completion: count(o.completion_tokens), cached: count(details?.cached_tokens) };
}

/**
 * Finds the last `"usage":{...}` object in the tail of a JSON document (where engines put it) and reads it,
 * without parsing the whole document (embeddings responses are large). `read` reads the protocol's usage object.
 */
export function usageFromJsonTail(tail: string, read: (u: unknown) => TokenUsage | null = usageFromObject): TokenUsage | null {
  const at = tail.lastIndexOf('"usage":');
  if (at < 0) return null;
  let i = at + 8;
  while (i < tail.length && tail.charCodeAt(i) <= 32) i++;
  if (tail[i] !== '{') return null;
  let depth = 0;
  let inString = false;
  for (let j = i; j < tail.length; j++) {
    const c = tail.charCodeAt(j);
    if (inString) {
      if (c === 92 /* \ */) j++;
      else if (c === 34 /* " */) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 123 /* { */) depth++;
    else if (c === 125 /* } */ && --depth === 0) {
      try {
        return read(JSON.parse(tail.slice(i, j + 1)));
      } catch {
        return null;
      }
    }
  }
  return null;
}
