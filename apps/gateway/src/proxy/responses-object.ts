/** What of the client's request a Response object echoes, beyond what the engine saw. */
export interface ResponseEcho {
  /** The model as the client named it (the engine's name is the tier's `upstream:`). */
  readonly model: string;
  /** The turn the client continued (the engine got the expanded input and no previous_response_id). */
  readonly previousResponseId: string | null;
  /** `store` (the engine always gets false: the state is ours). */
  readonly store: boolean;
  /** The client's request body (safety_identifier, prompt_cache_key, prompt_cache_retention are echoed). */
  readonly body: Record<string, unknown>;
}

/**
 * The fields of OpenAI's Response object with the value OpenAI gives when nothing set them, for those vLLM's
 * ResponsesResponse leaves out (error, conversation, safety_identifier, prompt_cache_key, prompt_cache_retention,
 * completed_at) and, should an engine omit them, the rest of the object's fields.
 */
const DEFAULTS: ReadonlyArray<readonly [string, unknown]> = [
  ['background', false],
  ['conversation', null],
  ['error', null],
  ['incomplete_details', null],
  ['instructions', null],
  ['max_output_tokens', null],
  ['max_tool_calls', null],
  ['metadata', {}],
  ['parallel_tool_calls', true],
  ['prompt', null],
  ['reasoning', null],
  ['service_tier', 'default'],
  ['temperature', null],
  ['tool_choice', 'auto'],
  ['tools', []],
  ['top_logprobs', null],
  ['top_p', null],
  ['truncation', 'disabled'],
  ['user', null],
];

const ECHOED = ['safety_identifier', 'prompt_cache_key', 'prompt_cache_retention'] as const;

/**
 * Completes an engine's Response object (in place) into the one OpenAI would answer: every field of OpenAI's
 * Response present, the model as the client named it, `previous_response_id` (null when absent, the id given
 * otherwise), `store`, the request's safety_identifier / prompt_cache_key / prompt_cache_retention, and
 * `completed_at` once it is completed. Fields the engine set are kept. Returns the object.
 */
export function completeResponse(r: Record<string, unknown>, echo: ResponseEcho, nowMs = Date.now()): Record<string, unknown> {
  r.model = echo.model;
  r.previous_response_id = echo.previousResponseId;
  r.store = echo.store;
  for (const [field, value] of DEFAULTS) {
    if (r[field] === undefined) r[field] = Array.isArray(value) ? [] : value !== null && typeof value === 'object' ? {} : value;
  }
  for (const field of ECHOED) {
    if (r[field] === undefined) {
      const given = echo.body[field];
      r[field] = typeof given === 'string' ? given : null;
    }
  }
  if (r.completed_at === undefined) r.completed_at = r.status === 'completed' ? Math.floor(nowMs / 1000) : null;
  return r;
}
