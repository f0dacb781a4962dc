import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import { z } from 'zod';

const httpUrl = z.string().refine((v) => {
  try {
    const u = new URL(v);
    return (u.protocol === 'http:' || u.protocol === 'https:') && (u.pathname === '/' || u.pathname === '');
  } catch {
    return false;
  }
}, 'expected an http(s) base URL without a path, e.g. http://127.0.0.1:8090');

const price = z.strictObject({
  input_per_mtok: z.number().nonnegative(),
  output_per_mtok: z.number().nonnegative(),
  cached_input_per_mtok: z.number().nonnegative().optional(),
});

const model = z.strictObject({
  id: z.string().min(1).regex(/^[\w.:/@-]+$/, 'expected letters, digits and . _ - : / @'),
  upstream: z.string().min(1).optional(),
  price,
});

const tier = z.strictObject({
  name: z.string().min(1).regex(/^[a-z0-9][a-z0-9-]*$/, 'expected lower-case letters, digits and -'),
  kind: z.enum(['spot', 'on-demand']),
  endpoints: z.array(httpUrl).min(1),
  /** Sent as `Authorization: Bearer` to the engine (vLLM's --api-key), if set. */
  api_key: z.string().min(1).optional(),
  models: z.array(model).min(1),
});

export const tiersFileSchema = z.strictObject({ tiers: z.array(tier).min(1) });

export type TiersFile = z.infer<typeof tiersFileSchema>;
export type TierSpec = TiersFile['tiers'][number];
export type ModelPrice = z.infer<typeof price>;

/** Thrown for an unreadable or invalid tiers file; the message names the file and each offending field. */
export class TiersFileError extends Error {
  readonly code = 'tiers_file_invalid';
}

function fieldPath(path: ReadonlyArray<PropertyKey>): string {
  return path.reduce<string>((acc, p) => (typeof p === 'number' ? `${acc}[${p}]` : acc ? `${acc}.${String(p)}` : String(p)), '');
}

/** Parses and validates tiers YAML text. `source` names the file in error messages. */
export function parseTiersFile(text: string, source: string): TiersFile {
  const doc = parseDocument(text, { prettyErrors: true });
  if (doc.errors.length > 0) {
    throw new TiersFileError(`${source}: invalid YAML: ${doc.errors.map((e) => e.message).join('; ')}`);
  }
  const parsed = tiersFileSchema.safeParse(doc.toJS());
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${fieldPath(i.path) || '(root)'}: ${i.message}`);
    throw new TiersFileError(`${source}: invalid tiers file:\n${lines.join('\n')}`);
  }
  const names = new Set<string>();
  for (const [i, t] of parsed.data.tiers.entries()) {
    if (names.has(t.name)) throw new TiersFileError(`${source}: invalid tiers file:\n  tiers[${i}].name: duplicate tier name "${t.name}"`);
    names.add(t.name);
    const ids = new Set<string>();
    for (const [j, m] of t.models.entries()) {
      if (ids.has(m.id)) {
        throw new TiersFileError(`${source}: invalid tiers file:\n  tiers[${i}].models[${j}].id: duplicate model "${m.id}" in tier "${t.name}"`);
      }
      ids.add(m.id);
    }
  }
  return parsed.data;
}

/** Reads and validates the tiers file at `path`. */
export function loadTiersFile(path: string): TiersFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new TiersFileError(`${path}: cannot read tiers file (${(err as NodeJS.ErrnoException).code ?? String(err)})`, { cause: err });
  }
  return parseTiersFile(text, path);
}
