import { ResponseFields, STOP_REASON } from './response-fields';

/** vLLM's chat stream for two choices, as the sim writes it (stop_reason beside finish_reason). */
const CHAT_STREAM = [
  'data: {"id":"chatcmpl-abc123","object":"chat.completion.chunk","created":1,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}\n\n',
  'data: {"id":"chatcmpl-abc123","object":"chat.completion.chunk","created":1,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"delta":{"content":"Hi","tool_calls":[{"index":0,"id":"call_1"}]},"logprobs":null,"finish_reason":null}]}\n\n',
  'data: {"id":"chatcmpl-abc123","object":"chat.completion.chunk","created":1,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"delta":{"content":"!"},"logprobs":null,"finish_reason":"stop","stop_reason":"###"}]}\n\n',
  'data: {"id":"chatcmpl-abc123","object":"chat.completion.chunk","created":1,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":1,"delta":{"content":""},"logprobs":null,"finish_reason":"length","stop_reason":null}]}\n\n',
  'data: [DONE]\n\n',
].join('');

function readAll(text: string, cuts: number[], fields = new ResponseFields()): ResponseFields {
  const buf = Buffer.from(text);
  let from = 0;
  for (const cut of [...cuts, buf.length]) {
    fields.push(buf.subarray(from, cut));
    from = cut;
  }
  return fields;
}

describe('ResponseFields', () => {
  it('reads the id, the model and each finish reason of a stream, not the tool call id nor vLLM stop_reason', () => {
    const f = readAll(CHAT_STREAM, []);
    expect(f.id).toBe('chatcmpl-abc123');
    expect(f.model).toBe('meta-llama/Llama-3.1-8B-Instruct');
    expect(f.finishReasons).toEqual(['stop', 'length']);
  });

  it('finds the same whatever the reads are cut at (every cut point, and cut into single bytes)', () => {
    const len = Buffer.byteLength(CHAT_STREAM);
    for (let cut = 1; cut < len; cut++) {
      const f = readAll(CHAT_STREAM, [cut]);
      expect([cut, f.id, f.model, f.finishReasons]).toEqual([cut, 'chatcmpl-abc123', 'meta-llama/Llama-3.1-8B-Instruct', ['stop', 'length']]);
    }
    const bytes = readAll(CHAT_STREAM, Array.from({ length: len - 1 }, (_, i) => i + 1));
    expect([bytes.id, bytes.model, bytes.finishReasons]).toEqual(['chatcmpl-abc123', 'meta-llama/Llama-3.1-8B-Instruct', ['stop', 'length']]);
  });

  it("Anthropic's messages: the stop_reason of message_delta (not message_start's null)", () => {
    const messages =
      'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[],"stop_reason":null}}\n\n' +
      'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":3}}\n\n';
    const f = readAll(messages, [40, 200], new ResponseFields(STOP_REASON));
    expect([f.id, f.model, f.finishReasons]).toEqual(['msg_1', 'm', ['end_turn']]);
  });

  it('a body without those fields leaves them unset', () => {
    const f = readAll('{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1]}],"usage":{"prompt_tokens":1}}', [17]);
    expect([f.id, f.model, f.finishReasons]).toEqual([null, null, []]);
  });
});
