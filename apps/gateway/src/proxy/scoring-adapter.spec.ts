import { SCORING_ADAPTERS, scoringUsage } from './scoring-adapter';

describe('scoring adapters', () => {
  it("reads rerank's usage from the head of the body, where vLLM puts it, and older vLLM's total_tokens as prompt", () => {
    const head = '{"id":"rerank-1","model":"m","usage":{"prompt_tokens":42,"total_tokens":42},"results":[{"index":0,"document":{"text":"x';
    expect(SCORING_ADAPTERS.rerank.usageFromBody('..."}}]}', head)).toEqual({ prompt: 42, completion: 0, cached: 0 });
    expect(scoringUsage('{"usage":{"total_tokens":7},"results":[]}')).toEqual({ prompt: 7, completion: 0, cached: 0 });
    expect(scoringUsage('{"results":[]}')).toBeNull();
  });

  it('refuses streams and missing fields before any engine', () => {
    expect(() => SCORING_ADAPTERS.score.check({ model: 'm', text_1: 'a' }, 10)).toThrow(/'text_2'/);
    expect(() => SCORING_ADAPTERS.rerank.check({ model: 'm', query: 'q', documents: [], stream: true }, 10)).toThrow(/stream/);
    const req = SCORING_ADAPTERS.rerank_v2.check({ model: 'm', query: 'q', documents: ['d'] }, 400);
    expect(req).toMatchObject({ model: 'm', stream: false, completionTokensCap: 0, promptTokensEstimate: 100 });
    expect(SCORING_ADAPTERS.rerank_v2.upstreamPath).toBe('/v2/rerank');
  });
});
