import { FaultController } from './fault-plan';
import { pythonJsonDumps, sampleFromSchema } from './schema-sample';
import { errorTypeFor } from './sim-errors';
import { chatPromptTokens, countWords, deliveredPieces, deliveredSuffix, PieceOutput, splitPieces, WordOutput } from './sim-tokens';

describe('sim token accounting', () => {
  it('counts words across whitespace kinds', () => {
    expect(countWords('')).toBe(0);
    expect(countWords('  a\tb\nc  ')).toBe(3);
  });

  it('prices a chat prompt as 3 + per message (4 + words) + 8 per tool', () => {
    const messages = [
      { role: 'system', content: 'be brief' },
      { role: 'user', content: [{ type: 'text', text: 'one two three' }, { type: 'image_url', image_url: { url: 'x' } }] },
      { role: 'assistant', content: null, tool_calls: [{ function: { name: 'f', arguments: '{"a": 1}' } }] },
    ];
    expect(chatPromptTokens(messages, 0)).toBe(3 + (4 + 2) + (4 + 3) + (4 + 2));
    expect(chatPromptTokens(messages, 2)).toBe(3 + 6 + 7 + 6 + 16);
  });

  it('cuts outputs at the cap with finish_reason length', () => {
    const w = new WordOutput(5, 3, 0);
    expect([w.count, w.finishReason, w.text()]).toEqual([3, 'length', ' lorem ipsum dolor']);
    expect(new WordOutput(5, 5, 0).finishReason).toBe('stop');
    const call = new PieceOutput(splitPieces('{"a": 1}'), 100, { id: 'i', name: 'f' });
    expect([call.count, call.finishReason, call.text()]).toEqual([3, 'tool_calls', '{"a": 1}']);
    const cut = new PieceOutput(splitPieces('{"a": 1}'), 2, { id: 'i', name: 'f' });
    expect([cut.count, cut.finishReason, cut.text()]).toEqual([2, 'length', '{"a"']);
  });

  it('resumes an output after the tokens already delivered', () => {
    const w = new WordOutput(5, 2, 0, 2);
    expect([w.count, w.finishReason, w.text()]).toEqual([2, 'length', ' dolor sit']);
    expect(new WordOutput(5, 10, 0, 5)).toMatchObject({ count: 0, finishReason: 'stop' });
    expect(deliveredSuffix('tell me lorem ipsum', 5)).toBe(2);
    expect(deliveredSuffix('lorem', 5)).toBe(1);
    expect(deliveredSuffix('tell me', 5)).toBe(0);
    expect(deliveredSuffix('xlorem', 5)).toBe(0);
    const pieces = splitPieces('{"a": "value"}');
    expect(deliveredPieces(pieces, '{"a": "va')).toBe(2);
    expect(pieces).toEqual(['{"a"', ': "v', 'alue', '"}']);
    expect(new PieceOutput(pieces, 100, null, 2).text()).toBe('alue"}');
  });

  it('splits by code points, never inside a surrogate pair', () => {
    expect(splitPieces('ab😀cdef', 3)).toEqual(['ab😀', 'cde', 'f']);
  });
});

describe('schema sampling', () => {
  it('fills every property by type, honouring const, enum, minimum, formats and refs', () => {
    const schema = {
      type: 'object',
      properties: {
        s: { type: 'string' },
        n: { type: 'number' },
        i: { type: 'integer', minimum: 5 },
        b: { type: 'boolean' },
        nul: { type: ['null', 'string'] },
        e: { enum: ['x', 'y'] },
        c: { const: 42 },
        d: { type: 'string', format: 'date' },
        arr: { type: 'array', items: { type: 'integer' }, minItems: 2 },
        any: { anyOf: [{ type: 'null' }, { type: 'boolean' }] },
        r: { $ref: '#/definitions/R' },
      },
      definitions: { R: { type: 'object', properties: { z: { type: 'string' } } } },
    };
    expect(sampleFromSchema(schema)).toEqual({
      s: 'value', n: 1, i: 5, b: true, nul: 'value', e: 'x', c: 42, d: '2024-01-01', arr: [1, 1], any: true, r: { z: 'value' },
    });
    expect(sampleFromSchema({})).toEqual({});
  });

  it('serialises like Python json.dumps', () => {
    expect(pythonJsonDumps({ a: [1, 'x', null], b: { c: true } })).toBe('{"a": [1, "x", null], "b": {"c": true}}');
  });
});

describe('FaultController', () => {
  it('takes faults FIFO, by path and model, spending counts', () => {
    const f = new FaultController();
    f.add(
      { kind: 'hang', model: 'm2' },
      { kind: 'error-before', status: 500, count: 2 },
      { kind: 'slow-start', delayMs: 5, path: '/health' },
    );
    expect(f.take('/health', undefined)?.kind).toBe('slow-start');
    expect(f.take('/v1/chat/completions', 'm1')?.kind).toBe('error-before');
    expect(f.take('/v1/chat/completions', 'm2')?.kind).toBe('hang');
    expect(f.take('/v1/embeddings', 'm2')?.kind).toBe('error-before');
    expect(f.take('/v1/embeddings', 'm2')).toBeUndefined();
    expect(f.take('/metrics', undefined)).toBeUndefined();
  });

  it('keeps an always fault until cleared and rejects bad specs', () => {
    const f = new FaultController();
    f.add({ kind: 'drop', afterTokens: 1, count: 'always' });
    for (let i = 0; i < 5; i++) expect(f.take('/v1/completions', 'm')?.kind).toBe('drop');
    expect(f.clear()).toBe(1);
    expect(() => f.add({ kind: 'error-before' } as never)).toThrow();
    expect(() => f.add({ kind: 'drop', afterTokens: -1 })).toThrow();
  });
});

describe('errorTypeFor', () => {
  it('names statuses like Python exception classes', () => {
    expect([400, 404, 429, 500, 503].map(errorTypeFor)).toEqual([
      'BadRequestError', 'NotFoundError', 'TooManyRequestsError', 'InternalServerError', 'ServiceUnavailableError',
    ]);
  });
});
