import { postJson } from '../../../test/support/sim-sse';
import { pairTokens, relevance } from './scoring';
import { startSim, type SimServer } from './sim-server';

describe('scoring units', () => {
  it('scores deterministically, higher for documents that hold the query words', () => {
    expect(relevance('capital of france', 'paris is the capital of france')).toBe(relevance('capital of france', 'paris is the capital of france'));
    expect(relevance('capital of france', 'paris is the capital of france')).toBeGreaterThan(relevance('capital of france', 'bananas are yellow'));
    for (const s of [relevance('a', 'a'), relevance('a', 'b'), relevance('', '')]) {
      expect(s).toBeGreaterThan(0);
      expect(s).toBeLessThan(1);
    }
    expect(pairTokens('one two', 'three')).toBe(5);
  });
});

describe('vllm-sim rerank and score', () => {
  let sim: SimServer;
  beforeAll(async () => {
    sim = await startSim({ models: ['m1', 'reranker'] });
  });
  afterAll(() => sim.close());
  beforeEach(() => sim.reset());

  const documents = ['bananas are yellow', 'paris is the capital of france', 'the capital of spain is madrid'];

  it.each(['/v1/rerank', '/rerank', '/v2/rerank'])('%s answers vLLM RerankResponse, best first, top_n cut', async (path) => {
    const res = await postJson(`${sim.url}${path}`, { model: 'reranker', query: 'capital of france', documents, top_n: 2 }, { headers: { 'x-request-id': 'q1' } });
    expect(res.status).toBe(200);
    const body = (await res.json()) as {
      id: string;
      model: string;
      usage: unknown;
      results: { index: number; document: { text: string }; relevance_score: number }[];
    };
    expect(body.id).toBe('rerank-q1');
    expect(body.model).toBe('reranker');
    // Each pair: query words + document words + 2.
    expect(body.usage).toEqual({ prompt_tokens: 30, total_tokens: (3 + 3 + 2) + (3 + 6 + 2) + (3 + 6 + 2) });
    expect(body.results).toHaveLength(2);
    expect(body.results[0]).toEqual({ index: 1, document: { text: documents[1], multi_modal: null }, relevance_score: relevance('capital of france', documents[1]!) });
    expect(body.results[0]!.relevance_score).toBeGreaterThan(body.results[1]!.relevance_score);
    expect(sim.stats).toMatchObject({ requests: 1, completed: 1, promptTokens: 30, generationTokens: 0 });
    expect(sim.received.at(-1)!.path).toBe(path);
  });

  it('returns every document without top_n and accepts {text} documents', async () => {
    const res = await postJson(`${sim.url}/v1/rerank`, { query: 'q', documents: [{ text: 'a' }, 'b'] });
    const body = (await res.json()) as { model: string; results: { index: number }[] };
    expect(body.model).toBe('m1');
    expect(body.results.map((r) => r.index).sort()).toEqual([0, 1]);
  });

  it('scores 1:N and N:N pairs (vLLM ScoreResponse) and rejects other shapes', async () => {
    const one = await postJson(`${sim.url}/v1/score`, { model: 'reranker', text_1: 'capital of france', text_2: documents }, { headers: { 'x-request-id': 's1' } });
    const body = (await one.json()) as { id: string; object: string; data: { index: number; object: string; score: number }[]; usage: unknown };
    expect(body).toMatchObject({ id: 'score-s1', object: 'list', model: 'reranker' });
    expect(body.data.map((d) => [d.index, d.object])).toEqual([[0, 'score'], [1, 'score'], [2, 'score']]);
    expect(body.data[1]!.score).toBe(relevance('capital of france', documents[1]!));
    expect(body.usage).toEqual({ prompt_tokens: 30, total_tokens: 30, completion_tokens: 0, prompt_tokens_details: null });

    const pairs = (await (await postJson(`${sim.url}/score`, { text_1: ['a', 'b'], text_2: ['a', 'c'] })).json()) as { data: { score: number }[] };
    expect(pairs.data.map((d) => d.score)).toEqual([relevance('a', 'a'), relevance('b', 'c')]);

    const bad = await postJson(`${sim.url}/v1/score`, { text_1: ['a', 'b'], text_2: ['a', 'b', 'c'] });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { message: string } }).error.message).toBe('Input lengths must be either 1:1, 1:N or N:N');
  });

  it('validates like vLLM and takes faults', async () => {
    const missing = await postJson(`${sim.url}/v1/rerank`, { documents });
    expect(missing.status).toBe(400);
    expect(((await missing.json()) as { error: { message: string } }).error.message).toMatch(/'loc': \('body', 'query'\), 'msg': 'Field required'/);
    expect((await postJson(`${sim.url}/v1/rerank`, { model: 'zz', query: 'q', documents })).status).toBe(404);

    sim.faults.add({ kind: 'error-before', status: 503, path: '/v2/rerank' });
    expect((await postJson(`${sim.url}/v2/rerank`, { query: 'q', documents })).status).toBe(503);
    // Faults without a path apply to every inference path, these included.
    sim.faults.add({ kind: 'error-before', status: 500 });
    expect((await postJson(`${sim.url}/v1/score`, { text_1: 'a', text_2: 'b' })).status).toBe(500);
  });
});
