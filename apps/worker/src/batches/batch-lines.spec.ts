import { usageOfBody } from './batch-lines';

describe('usageOfBody', () => {
  it('reads chat and completions usage, cached and reasoning tokens included', () => {
    expect(usageOfBody({ usage: { prompt_tokens: 10, completion_tokens: 5, prompt_tokens_details: { cached_tokens: 4 }, completion_tokens_details: { reasoning_tokens: 3 } } })).toEqual({ prompt: 10, completion: 5, cached: 4, reasoning: 3 });
    expect(usageOfBody({ usage: { prompt_tokens: 7, total_tokens: 7, prompt_tokens_details: null } })).toEqual({ prompt: 7, completion: 0, cached: 0, reasoning: 0 });
  });

  it('reads Responses usage', () => {
    expect(usageOfBody({ usage: { input_tokens: 9, output_tokens: 6, input_tokens_details: { cached_tokens: 2 }, output_tokens_details: { reasoning_tokens: 1 } } })).toEqual({ prompt: 9, completion: 6, cached: 2, reasoning: 1 });
  });

  it('is null without usage, and counts nonsense as 0', () => {
    expect(usageOfBody({ id: 'x' })).toBeNull();
    expect(usageOfBody(null)).toBeNull();
    expect(usageOfBody({ usage: { prompt_tokens: -1, completion_tokens: 1.5 } })).toEqual({ prompt: 0, completion: 0, cached: 0, reasoning: 0 });
  });
});
