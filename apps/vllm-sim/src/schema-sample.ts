/** Builds a value that satisfies a JSON schema, the way guided decoding would: deterministic and minimal. */

type Schema = Record<string, unknown>;

const MAX_DEPTH = 8;

export function sampleFromSchema(schema: unknown, root: unknown = schema, depth = 0): unknown {
  if (schema === null || typeof schema !== 'object' || depth > MAX_DEPTH) return 'value';
  const s = schema as Schema;
  if ('const' in s) return s.const;
  if (Array.isArray(s.enum) && s.enum.length > 0) return s.enum[0];
  if (typeof s.$ref === 'string') return sampleFromSchema(resolveRef(s.$ref, root), root, depth + 1);
  for (const key of ['anyOf', 'oneOf', 'allOf'] as const) {
    const list = s[key];
    if (Array.isArray(list) && list.length > 0) {
      const pick = list.find((x) => (x as Schema | null)?.type !== 'null') ?? list[0];
      return sampleFromSchema(pick, root, depth + 1);
    }
  }
  let type = s.type;
  if (Array.isArray(type)) type = type.find((t) => t !== 'null') ?? type[0];
  if (type === undefined && (s.properties !== undefined || s.additionalProperties !== undefined)) type = 'object';
  switch (type) {
    case 'object': {
      const out: Record<string, unknown> = {};
      const props = (s.properties ?? {}) as Record<string, unknown>;
      for (const key of Object.keys(props)) out[key] = sampleFromSchema(props[key], root, depth + 1);
      return out;
    }
    case 'array': {
      const n = Math.max(1, typeof s.minItems === 'number' ? s.minItems : 1);
      const items = Array.isArray(s.prefixItems) ? s.prefixItems : null;
      const out: unknown[] = [];
      for (let i = 0; i < n; i++) out.push(sampleFromSchema(items?.[i] ?? s.items, root, depth + 1));
      return out;
    }
    case 'integer':
    case 'number':
      return typeof s.minimum === 'number' && s.minimum > 1 ? Math.ceil(s.minimum) : 1;
    case 'boolean':
      return true;
    case 'null':
      return null;
    case 'string':
      return sampleString(s);
    default:
      return depth === 0 ? {} : 'value';
  }
}

function sampleString(s: Schema): string {
  switch (s.format) {
    case 'date-time':
      return '2024-01-01T00:00:00Z';
    case 'date':
      return '2024-01-01';
    case 'email':
      return 'user@example.com';
    case 'uri':
    case 'url':
      return 'https://example.com';
    case 'uuid':
      return '00000000-0000-4000-8000-000000000000';
    default:
      return typeof s.minLength === 'number' && s.minLength > 5 ? 'v'.repeat(s.minLength) : 'value';
  }
}

function resolveRef(ref: string, root: unknown): unknown {
  if (!ref.startsWith('#/')) return undefined;
  let cur: unknown = root;
  for (const part of ref.slice(2).split('/')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Schema)[part.replace(/~1/g, '/').replace(/~0/g, '~')];
  }
  return cur;
}

/** Python's `json.dumps(v, ensure_ascii=False)`: what vLLM's tool parsers put in `arguments`. */
export function pythonJsonDumps(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (Array.isArray(v)) return `[${v.map(pythonJsonDumps).join(', ')}]`;
  if (typeof v === 'object') {
    const parts = Object.keys(v).map((k) => `${JSON.stringify(k)}: ${pythonJsonDumps((v as Schema)[k])}`);
    return `{${parts.join(', ')}}`;
  }
  return JSON.stringify(v);
}
