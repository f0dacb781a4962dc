import { usageFromJsonTail, usageFromObject } from './token-usage';

describe('token usage', () => {
  it('reads usage objects with and without cached tokens', () => {
    expect(usageFromObject({ prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 })).toEqual({ prompt: 10, completion: 5, cached: 0 });
    expect(usageFromObject({ prompt_tokens: 10, completion_tokens: 5, prompt_tokens_details: { cached_tokens: 4 } })).toEqual({
      prompt: 10,
      completion: 5,
      cached: 4,
    });
    expect(usageFromObject(null)).toBeNull();
    expect(usageFromObject({ total_tokens: 3 })).toBeNull();
  });

  it('finds the usage object at the end of a large document without parsing it all', () => {
    const doc = JSON.stringify({
      object: 'list',
      data: [{ object: 'embedding', embedding: Array.from({ length: 4000 }, (_, i) => i / 7), index: 0 }],
      model: 'm',
      usage: { prompt_tokens: 7, total_tokens: 7, prompt_tokens_details: { cached_tokens: 2 } },
    });
    expect(usageFromJsonTail(doc.slice(-2000))).toEqual({ prompt: 7, completion: 0, cached: 2 });
  });

  it('takes the last usage key and copes with braces in strings', () => {
    const doc = '{"choices":[{"message":{"content":"} \\" {"}}],"usage":{"prompt_tokens":1,"completion_tokens":2}}';
    expect(usageFromJsonTail(doc)).toEqual({ prompt: 1, completion: 2, cached: 0 });
    expect(usageFromJsonTail('{"usage": null}')).toBeNull();
    expect(usageFromJsonTail('{"usage":{"prompt_tokens":1')).toBeNull();
  });
});
