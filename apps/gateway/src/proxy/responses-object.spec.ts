import { completeResponse } from './responses-object';

/** vLLM's ResponsesResponse, as the sim dumps it. */
const engine = (status: string): Record<string, unknown> => ({
  id: 'resp_1',
  created_at: 1,
  incomplete_details: null,
  instructions: null,
  metadata: null,
  model: 'meta-llama/Llama-3.1-8B-Instruct',
  object: 'response',
  output: [],
  parallel_tool_calls: true,
  temperature: 1,
  tool_choice: 'auto',
  tools: [],
  top_p: 1,
  background: false,
  max_output_tokens: null,
  max_tool_calls: null,
  previous_response_id: null,
  prompt: null,
  reasoning: null,
  service_tier: 'auto',
  status,
  text: null,
  top_logprobs: null,
  truncation: 'disabled',
  usage: null,
  user: null,
});

// the fields of OpenAI's Response object (openai-node's `Response`, less the SDK's own output_text)
const OPENAI_FIELDS = [
  'id', 'created_at', 'error', 'incomplete_details', 'instructions', 'metadata', 'model', 'object', 'output', 'parallel_tool_calls',
  'temperature', 'tool_choice', 'tools', 'top_p', 'background', 'completed_at', 'conversation', 'max_output_tokens', 'max_tool_calls',
  'previous_response_id', 'prompt', 'prompt_cache_key', 'prompt_cache_retention', 'reasoning', 'safety_identifier', 'service_tier',
  'status', 'text', 'top_logprobs', 'truncation', 'usage', 'user',
];

describe('completeResponse', () => {
  const echo = { model: 'llama-test', previousResponseId: 'resp_0', store: true, body: { safety_identifier: 'user-7', prompt_cache_key: 'k' } };

  it("completes vLLM's Response into OpenAI's: every field, the client's model, previous_response_id, store, echoes", () => {
    const r = completeResponse(engine('completed'), echo, 5_000);
    for (const f of OPENAI_FIELDS) expect({ f, present: f in r }).toEqual({ f, present: true });
    expect(r).toMatchObject({
      model: 'llama-test',
      previous_response_id: 'resp_0',
      store: true,
      error: null,
      conversation: null,
      safety_identifier: 'user-7',
      prompt_cache_key: 'k',
      prompt_cache_retention: null,
      completed_at: 5,
      // what the engine set is kept
      service_tier: 'auto',
      temperature: 1,
    });
  });

  it('says null where no previous turn was given, and no completed_at before completion', () => {
    const r = completeResponse(engine('in_progress'), { model: 'm', previousResponseId: null, store: false, body: {} });
    expect(r).toMatchObject({ previous_response_id: null, store: false, completed_at: null, safety_identifier: null, prompt_cache_key: null });
  });

  it('fills the rest of the object for an engine that leaves more out', () => {
    const r = completeResponse({ id: 'resp_2', object: 'response', status: 'failed', output: [] }, echo);
    for (const f of OPENAI_FIELDS.filter((x) => x !== 'usage' && x !== 'text' && x !== 'created_at')) expect({ f, present: f in r }).toEqual({ f, present: true });
    expect(r).toMatchObject({ tools: [], metadata: {}, tool_choice: 'auto', truncation: 'disabled', completed_at: null });
  });
});
