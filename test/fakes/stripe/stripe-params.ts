import type { FormObject, FormValue } from './form-body';
import { invalidRequest, missingParam, unknownParam } from './stripe-errors';

/** Readers for form params that fail the way Stripe does (400 invalid_request_error naming the param). */

/** Rejects top-level params the endpoint does not take, like Stripe's `Received unknown parameter`. */
export function onlyKnown(params: FormObject, allowed: readonly string[]): void {
  for (const key of Object.keys(params)) {
    if (key !== 'expand' && !allowed.includes(key)) throw unknownParam(key);
  }
}

/** Rejects nested params a hash does not take (`recurring[foo]` -> `Received unknown parameter: recurring[foo]`). */
export function onlyKnownIn(hash: FormObject | undefined, name: string, allowed: readonly string[]): void {
  if (hash === undefined) return;
  for (const key of Object.keys(hash)) {
    if (!allowed.includes(key)) throw unknownParam(`${name}[${key}]`);
  }
}

export function optionalString(params: FormObject, name: string, path = name): string | undefined {
  const value: FormValue | undefined = params[name];
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw invalidRequest(`Invalid string: ${path}`, { param: path });
  return value;
}

export function requiredString(params: FormObject, name: string, path = name): string {
  const value = optionalString(params, name, path);
  if (value === undefined || value === '') throw missingParam(path);
  return value;
}

export function optionalHash(params: FormObject, name: string, path = name): FormObject | undefined {
  const value = params[name];
  if (value === undefined) return undefined;
  if (typeof value === 'string' || Array.isArray(value)) throw invalidRequest(`Invalid object: ${path}`, { param: path });
  return value;
}

export function optionalArray(params: FormObject, name: string): FormValue[] | undefined {
  const value = params[name];
  if (value === undefined) return undefined;
  if (!Array.isArray(value)) throw invalidRequest(`Invalid array: ${name}`, { param: name });
  return value;
}

export function optionalInteger(params: FormObject, name: string, path = name): number | undefined {
  const value = optionalString(params, name, path);
  if (value === undefined) return undefined;
  if (!/^-?\d+$/.test(value)) throw invalidRequest(`Invalid integer: ${value}`, { param: path });
  return Number(value);
}

export function optionalBoolean(params: FormObject, name: string): boolean | undefined {
  const value = optionalString(params, name);
  if (value === undefined) return undefined;
  if (value !== 'true' && value !== 'false') throw invalidRequest(`Invalid boolean: ${value}`, { param: name });
  return value === 'true';
}

export function oneOf<T extends string>(value: string, allowed: readonly T[], param: string): T {
  if (!(allowed as readonly string[]).includes(value)) {
    throw invalidRequest(`Invalid ${param}: must be one of ${allowed.join(', ')}`, { param });
  }
  return value as T;
}

/** `metadata[k]=v` pairs; as on Stripe, an empty value unsets the key. */
export function metadataParam(params: FormObject, existing: Record<string, string> = {}): Record<string, string> {
  const hash = optionalHash(params, 'metadata');
  const metadata = { ...existing };
  if (hash === undefined) return metadata;
  for (const [key, value] of Object.entries(hash)) {
    if (typeof value !== 'string') throw invalidRequest(`Invalid string: metadata[${key}]`, { param: `metadata[${key}]` });
    if (value === '') delete metadata[key];
    else metadata[key] = value;
  }
  return metadata;
}
