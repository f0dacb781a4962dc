/**
 * A parsed `application/x-www-form-urlencoded` value, after Stripe's bracket convention is expanded:
 * `metadata[org]=x` becomes `{ metadata: { org: 'x' } }` and `items[0][price]=p` becomes
 * `{ items: [{ price: 'p' }] }`. Leaves are always strings, as they are on the wire.
 */
export type FormValue = string | FormValue[] | FormObject;
export interface FormObject {
  [key: string]: FormValue;
}

/** A body or query string that cannot be expanded into one tree (e.g. both `a=1` and `a[b]=2`). */
export class FormBodyError extends Error {
  constructor(readonly param: string, message: string) {
    super(message);
  }
}

// Keys that would reach Object.prototype if a tree were built from plain objects carelessly.
const FORBIDDEN_SEGMENTS = new Set(['__proto__', 'prototype', 'constructor']);

/** Splits `items[0][price]` into `['items', '0', 'price']`; `expand[]` gives `['expand', '']`. */
export function splitKey(key: string): string[] {
  const open = key.indexOf('[');
  if (open <= 0) return [key];
  const segments = [key.slice(0, open)];
  let rest = key.slice(open);
  while (rest.length > 0) {
    const match = /^\[([^\]]*)\]/.exec(rest);
    // Anything after the brackets that is not another bracket pair is kept as part of the last name,
    // which is what a lenient server does with `a[b]c`.
    if (match === null) {
      segments[segments.length - 1] += rest;
      break;
    }
    segments.push(match[1]);
    rest = rest.slice(match[0].length);
  }
  return segments;
}

/**
 * Parses a form-encoded body (or a query string, without the `?`) the way Stripe reads the bodies
 * stripe-node sends: URL decoding by URLSearchParams (so `+` is a space), then bracket paths into
 * nested objects; an object whose keys are all array indices becomes an array, ordered by index.
 */
export function parseFormBody(raw: string): FormObject {
  const root: FormObject = Object.create(null) as FormObject;
  for (const [key, value] of new URLSearchParams(raw)) {
    if (key === '') continue;
    assign(root, splitKey(key), value, key);
  }
  return normalize(root) as FormObject;
}

function assign(root: FormObject, segments: string[], value: string, fullKey: string): void {
  let node: FormObject = root;
  for (let i = 0; i < segments.length; i++) {
    let segment = segments[i];
    if (FORBIDDEN_SEGMENTS.has(segment)) throw new FormBodyError(fullKey, `Invalid parameter name: ${fullKey}`);
    // `expand[]=a&expand[]=b`: an empty index appends.
    if (segment === '') segment = String(Object.keys(node).length);
    const last = i === segments.length - 1;
    const existing = node[segment];
    if (last) {
      if (existing !== undefined && typeof existing !== 'string') {
        throw new FormBodyError(fullKey, `Invalid ${fullKey}: cannot be both a value and a hash`);
      }
      node[segment] = value;
      return;
    }
    if (existing === undefined) {
      const child = Object.create(null) as FormObject;
      node[segment] = child;
      node = child;
    } else if (typeof existing === 'string') {
      throw new FormBodyError(fullKey, `Invalid ${fullKey}: cannot be both a value and a hash`);
    } else {
      node = existing as FormObject;
    }
  }
}

function normalize(value: FormValue): FormValue {
  if (typeof value === 'string') return value;
  const keys = Object.keys(value);
  const normalized: FormObject = {};
  for (const key of keys) normalized[key] = normalize((value as FormObject)[key]);
  if (keys.length > 0 && keys.every((k) => /^(0|[1-9]\d*)$/.test(k))) {
    return keys
      .map(Number)
      .sort((a, b) => a - b)
      .map((k) => normalized[String(k)]);
  }
  return normalized;
}
