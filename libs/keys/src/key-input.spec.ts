import { mintApiKey } from './api-key';
import { parseDuration, parseKeyName, parseKeyReference, parseLimit, parseModelIds } from './key-input';
import { InvalidArgumentError } from './keys.errors';

function errorOf(fn: () => unknown): InvalidArgumentError {
  try {
    fn();
  } catch (err) {
    if (err instanceof InvalidArgumentError) return err;
    throw err;
  }
  throw new Error('expected an InvalidArgumentError');
}

describe('parseDuration', () => {
  it.each([
    ['90m', 90 * 60_000],
    ['12h', 12 * 3_600_000],
    ['30d', 30 * 86_400_000],
    ['1w', 7 * 86_400_000],
    [' 2d ', 2 * 86_400_000],
  ])('reads %j', (raw, ms) => {
    expect(parseDuration(raw)).toBe(ms);
  });

  it.each(['0d', '0m', '00h'])('rejects zero (%j)', (raw) => {
    const err = errorOf(() => parseDuration(raw, '--expires-in'));
    expect(err.code).toBe('invalid_argument');
    expect(err.message).toBe('--expires-in: must be greater than zero');
  });

  it.each(['', 'abc', '30', 'd', '30x', '-1d', '1.5d', '30 d', '1d12h', '30D', '1e3d'])('rejects junk %j', (raw) => {
    const err = errorOf(() => parseDuration(raw, '--expires-in'));
    expect(err.argument).toBe('--expires-in');
    expect(err.message).toContain('expected a duration like 90m, 12h, 30d or 1w');
  });

  it('rejects more than ten years', () => {
    expect(parseDuration('3650d')).toBe(3650 * 86_400_000);
    expect(errorOf(() => parseDuration('3651d')).message).toContain('at most 3650d');
  });
});

describe('parseModelIds', () => {
  it('splits, trims and de-duplicates a comma-separated list', () => {
    expect(parseModelIds(' llama-3.1-8b, meta-llama/Llama-3.1-8B-Instruct,qwen2.5:7b,llama-3.1-8b ,')).toEqual([
      'llama-3.1-8b',
      'meta-llama/Llama-3.1-8B-Instruct',
      'qwen2.5:7b',
    ]);
  });

  it('treats an empty list as "every model"', () => {
    expect(parseModelIds([])).toEqual([]);
    expect(parseModelIds('')).toEqual([]);
  });

  it.each(['bad model', 'a,b c', '-leading-dash', 'x'.repeat(129), 'semi;colon', ',,,'])('rejects %j', (raw) => {
    const err = errorOf(() => parseModelIds(raw, '--models'));
    expect(err.message.startsWith('--models: ')).toBe(true);
  });

  it('rejects an empty id in an array', () => {
    expect(errorOf(() => parseModelIds(['a', ''], 'allowedModels')).argument).toBe('allowedModels');
  });
});

describe('parseKeyName', () => {
  it('trims and accepts up to 100 characters', () => {
    expect(parseKeyName('  ci runner ')).toBe('ci runner');
    expect(parseKeyName('n'.repeat(100))).toHaveLength(100);
  });

  it('rejects empty, too long and control characters', () => {
    expect(errorOf(() => parseKeyName('   ', '--name')).message).toBe('--name: must not be empty');
    expect(errorOf(() => parseKeyName('n'.repeat(101), '--name')).message).toContain('at most 100 characters');
    expect(errorOf(() => parseKeyName('a\nb')).message).toContain('control characters');
  });
});

describe('parseKeyReference', () => {
  it('accepts an id, a prefix, or a whole key reduced to its prefix', () => {
    const { key, prefix } = mintApiKey();
    expect(parseKeyReference('0F8FAD5B-D9CB-469F-A165-70867728950E')).toBe('0f8fad5b-d9cb-469f-a165-70867728950e');
    expect(parseKeyReference(prefix)).toBe(prefix);
    expect(parseKeyReference(key)).toBe(prefix);
  });

  it('rejects anything else without echoing it', () => {
    const err = errorOf(() => parseKeyReference('sk-spot-secret-looking-thing'));
    expect(err.message).not.toContain('secret-looking');
    expect(err.argument).toBe('key');
  });
});

describe('parseLimit', () => {
  it('reads positive integers and passes null through', () => {
    expect(parseLimit('60', '--rpm')).toBe(60);
    expect(parseLimit(5, 'rpmLimit')).toBe(5);
    expect(parseLimit(undefined, 'rpmLimit')).toBeNull();
    expect(parseLimit(null, 'rpmLimit')).toBeNull();
  });

  it.each(['0', '-1', '1.5', 'ten', '99999999999'])('rejects %j', (raw) => {
    expect(errorOf(() => parseLimit(raw, '--rpm')).message).toContain('--rpm: expected a positive integer');
  });
});
