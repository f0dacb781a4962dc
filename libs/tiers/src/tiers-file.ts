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
  /**
   * USD per minute of audio, for the speech-to-text requests the engine meters in seconds (vLLM's non-streamed
   * transcriptions report `usage: {type: "duration", seconds}`). Billed per second (a second is 1/60 of it);
   * what an engine meters in tokens (streamed transcriptions) is priced as tokens. Required for a model whose
   * `apis` lists `audio`; a model without `apis` and without it bills audio seconds at 0.
   */
  audio_per_minute: z.number().nonnegative().optional(),
  /** Batch API prices (USD per 1M tokens); without them, the tier's `batch_discount` off the prices above. */
  batch_input_per_mtok: z.number().nonnegative().optional(),
  batch_output_per_mtok: z.number().nonnegative().optional(),
  batch_cached_input_per_mtok: z.number().nonnegative().optional(),
});

/** The client APIs a model may serve (`apis:` in the tiers file). */
export const MODEL_APIS = ['chat', 'completions', 'embeddings', 'responses', 'messages', 'rerank', 'score', 'audio'] as const;

const model = z.strictObject({
  id: z.string().min(1).regex(/^[\w.:/@-]+$/, 'expected letters, digits and . _ - : / @'),
  upstream: z.string().min(1).optional(),
  price,
  /** The APIs the model serves on this tier; without it, every API. */
  apis: z.array(z.enum(MODEL_APIS)).min(1).optional(),
}).refine((m) => !(m.apis?.includes('audio') ?? false) || m.price.audio_per_minute !== undefined, {
  message: 'a model that serves `audio` needs `price.audio_per_minute` (USD per minute of audio)',
  path: ['price', 'audio_per_minute'],
});

const anyHttpUrl = z.string().refine((v) => {
  try {
    const u = new URL(v);
    return u.protocol === 'http:' || u.protocol === 'https:';
  } catch {
    return false;
  }
}, 'expected an http(s) URL');

/** How a sleeping tier is woken (and put to sleep by the worker when idle). */
const wake = z
  .strictObject({
    driver: z.enum(['vllm-sleep', 'webhook', 'kubernetes']),
    /** How long requests wait for the tier; past it they get 503 with retry-after. */
    deadline_s: z.number().positive().default(120),
    /** webhook: POSTed `{ "action": "wake" | "sleep", "tier": name }`. */
    url: anyHttpUrl.optional(),
    /** kubernetes: the API server, and the Deployment/StatefulSet whose scale subresource is patched. */
    api_server: anyHttpUrl.optional(),
    namespace: z.string().min(1).optional(),
    kind: z.enum(['Deployment', 'StatefulSet']).default('Deployment'),
    name: z.string().min(1).optional(),
    replicas: z.number().int().positive().default(1),
    /** kubernetes: bearer token for the API server (a service account's). */
    token: z.string().min(1).optional(),
    /**
     * kubernetes: a file holding the bearer token, read at each call (projected service account tokens rotate),
     * e.g. /var/run/secrets/kubernetes.io/serviceaccount/token. The API server's CA goes in NODE_EXTRA_CA_CERTS.
     */
    token_file: z.string().min(1).optional(),
  })
  .superRefine((w, ctx) => {
    const need = (field: keyof typeof w) => {
      if (w[field] === undefined) ctx.addIssue({ code: 'custom', path: [field], message: `required by the ${w.driver} driver` });
    };
    if (w.driver === 'webhook') need('url');
    if (w.driver === 'kubernetes') {
      need('api_server');
      need('namespace');
      need('name');
      if (w.token !== undefined && w.token_file !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['token_file'], message: 'give token or token_file, not both' });
      }
    }
  });

/** The placeholders a `notice.url` template may use, filled from each endpoint's URL. */
const NOTICE_PLACEHOLDERS = ['{host}', '{port}', '{origin}'] as const;

/**
 * Where each replica's preemption notice is polled: a sidecar on the replica's machine that relays the cloud's
 * own notice (AWS `/latest/meta-data/spot/instance-action`, GCP `instance/preempted`, a Kubernetes preStop hook).
 * It answers 404 while nothing is coming, and 200 once the machine is going away, with JSON
 * `{"action": "terminate", "time": "<ISO 8601>"}` (AWS's body), `{"deadline_s": N}` (seconds from now), or the
 * text `TRUE` (GCP's; its deadline is `default_deadline_s` after the gateway first reads it). `FALSE` is no notice.
 */
const notice = z
  .strictObject({
    /**
     * A URL template filled per endpoint: `{host}` (e.g. 10.0.0.5, or [::1]), `{port}` (the engine's, or 80/443)
     * and `{origin}` (the engine's base URL), e.g. `http://{host}:9100/notice` or `{origin}/spot/notice`.
     */
    url: z.string().min(1).optional(),
    /** Instead of `url`: one URL per endpoint, in the order of `endpoints`. */
    urls: z.array(anyHttpUrl).min(1).optional(),
    /** How often every gateway asks each replica's URL (AWS advises every 5 s). */
    interval_ms: z.number().int().min(100).default(5_000),
    /** Deadline given to a notice that carries none (GCP's `TRUE`: it gives 30 s). */
    default_deadline_s: z.number().positive().default(30),
  })
  .superRefine((n, ctx) => {
    if ((n.url === undefined) === (n.urls === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['url'], message: 'give url (a template) or urls (one per endpoint), not both and not neither' });
    }
    if (n.url !== undefined) {
      const sample = n.url.replaceAll('{host}', '127.0.0.1').replaceAll('{port}', '8000').replaceAll('{origin}', 'http://127.0.0.1:8000');
      if (!anyHttpUrl.safeParse(sample).success || /\{[^}]*\}/.test(sample)) {
        ctx.addIssue({ code: 'custom', path: ['url'], message: `expected an http(s) URL template using ${NOTICE_PLACEHOLDERS.join(', ')}` });
      }
    }
  });

const tier = z.strictObject({
  name: z.string().min(1).regex(/^[a-z0-9][a-z0-9-]*$/, 'expected lower-case letters, digits and -'),
  kind: z.enum(['spot', 'on-demand']),
  endpoints: z.array(httpUrl).min(1),
  /** Sent as `Authorization: Bearer` to the engine (vLLM's --api-key), if set. */
  api_key: z.string().min(1).optional(),
  models: z.array(model).min(1),
  /** The tier may sleep: how to wake it. Without it the tier is always on. */
  wake: wake.optional(),
  /** The worker puts the tier to sleep after this long without requests (needs `wake`). */
  idle_sleep_s: z.number().int().positive().optional(),
  /** While this tier wakes, serve its models on the next tier that is awake (true, the default), or wait. */
  fallback_while_waking: z.boolean().optional(),
  /** Poll each replica for a preemption notice (spot machines): see {@link notice}. */
  notice: notice.optional(),
  /** The tier takes Batch API work (default: spot tiers do, on-demand tiers do not). */
  batch: z.boolean().optional(),
  /** Batch prices are this fraction off the tier's prices where a model gives no `batch_*_per_mtok` (default 0.5). */
  batch_discount: z.number().min(0).max(1).optional(),
});

export const tiersFileSchema = z.strictObject({
  tiers: z.array(tier).min(1),
  /**
   * Order of preference per model: model id → tier names, most preferred first. Tiers serving the model that
   * are not listed follow in the default order (spot before on-demand, then file order).
   */
  preference: z.record(z.string(), z.array(z.string().min(1)).min(1)).optional(),
});

export type TiersFile = z.infer<typeof tiersFileSchema>;
export type TierSpec = TiersFile['tiers'][number];
export type ModelPrice = z.infer<typeof price>;
export type ModelApi = (typeof MODEL_APIS)[number];
export type WakeSpec = z.infer<typeof wake>;
export type NoticeSpec = z.infer<typeof notice>;

/** The notice URL of each endpoint of a tier with a `notice` block, in the order of `endpoints`. */
export function noticeUrls(spec: NoticeSpec, endpoints: readonly string[]): string[] {
  if (spec.urls !== undefined) return [...spec.urls];
  return endpoints.map((endpoint) => {
    const u = new URL(endpoint);
    const port = u.port || (u.protocol === 'https:' ? '443' : '80');
    return spec.url!.replaceAll('{host}', u.hostname).replaceAll('{port}', port).replaceAll('{origin}', u.origin);
  });
}

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
    if (t.idle_sleep_s !== undefined && t.wake === undefined) {
      throw new TiersFileError(`${source}: invalid tiers file:\n  tiers[${i}].idle_sleep_s: needs a wake driver (tiers[${i}].wake) to wake the tier again`);
    }
    if (t.notice?.urls !== undefined && t.notice.urls.length !== t.endpoints.length) {
      throw new TiersFileError(
        `${source}: invalid tiers file:\n  tiers[${i}].notice.urls: expected one URL per endpoint (${t.endpoints.length}), got ${t.notice.urls.length}`,
      );
    }
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
  for (const [model, order] of Object.entries(parsed.data.preference ?? {})) {
    const serving = parsed.data.tiers.filter((t) => t.models.some((m) => m.id === model)).map((t) => t.name);
    const at = `preference.${model}`;
    if (serving.length === 0) throw new TiersFileError(`${source}: invalid tiers file:\n  ${at}: no tier serves model "${model}"`);
    const seen = new Set<string>();
    for (const [k, name] of order.entries()) {
      if (!names.has(name)) throw new TiersFileError(`${source}: invalid tiers file:\n  ${at}[${k}]: no tier is named "${name}"`);
      if (!serving.includes(name)) throw new TiersFileError(`${source}: invalid tiers file:\n  ${at}[${k}]: tier "${name}" does not serve "${model}"`);
      if (seen.has(name)) throw new TiersFileError(`${source}: invalid tiers file:\n  ${at}[${k}]: tier "${name}" is listed twice`);
      seen.add(name);
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
