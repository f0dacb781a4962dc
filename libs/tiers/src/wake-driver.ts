import { readFileSync } from 'node:fs';
import type { TierView } from './model-catalog';
import type { WakeSpec } from './tiers-file';

/** Wakes a sleeping tier and puts an idle one to sleep, the way its `wake.driver` says. */
export interface WakeDriver {
  /** Resolves once every endpoint of the tier serves again; rejects when `signal` aborts first. */
  wake(signal: AbortSignal): Promise<void>;
  /** Puts the tier to sleep. */
  sleep(signal: AbortSignal): Promise<void>;
  /** Whether the tier sleeps now (probe at boot, and for gateways that did not wake it themselves). */
  isAsleep(signal: AbortSignal): Promise<boolean>;
}

const POLL_MS = 100;

async function pollUntil(check: () => Promise<boolean>, signal: AbortSignal): Promise<void> {
  for (;;) {
    signal.throwIfAborted();
    if (await check().catch(() => false)) return;
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(resolve, POLL_MS);
      signal.addEventListener('abort', () => {
        clearTimeout(t);
        reject(signal.reason as Error);
      }, { once: true });
    });
  }
}

async function healthy(endpoint: string, signal: AbortSignal): Promise<boolean> {
  const res = await fetch(`${endpoint}/health`, { signal });
  await res.arrayBuffer();
  return res.status === 200;
}

async function allHealthy(endpoints: readonly string[], signal: AbortSignal): Promise<boolean> {
  return (await Promise.all(endpoints.map((e) => healthy(e, signal).catch(() => false)))).every(Boolean);
}

async function anyHealthy(endpoints: readonly string[], signal: AbortSignal): Promise<boolean> {
  return (await Promise.all(endpoints.map((e) => healthy(e, signal).catch(() => false)))).some(Boolean);
}

async function ok(res: Response, what: string): Promise<void> {
  const body = await res.text();
  if (!res.ok) throw new Error(`${what}: HTTP ${res.status} ${body.slice(0, 200)}`);
}

/** vLLM sleep mode: POST /wake_up and /sleep on every replica, GET /is_sleeping to know. */
function vllmSleep(endpoints: readonly string[]): WakeDriver {
  const sleeping = async (e: string, signal: AbortSignal) => {
    const res = await fetch(`${e}/is_sleeping`, { signal });
    const body = (await res.json()) as { is_sleeping?: unknown };
    return body.is_sleeping === true;
  };
  return {
    async wake(signal) {
      await Promise.all(endpoints.map(async (e) => ok(await fetch(`${e}/wake_up`, { method: 'POST', signal }), `POST ${e}/wake_up`)));
      await pollUntil(async () => !(await Promise.all(endpoints.map((e) => sleeping(e, signal)))).some(Boolean), signal);
    },
    async sleep(signal) {
      await Promise.all(endpoints.map(async (e) => ok(await fetch(`${e}/sleep?level=1`, { method: 'POST', signal }), `POST ${e}/sleep`)));
    },
    async isAsleep(signal) {
      return (await Promise.all(endpoints.map((e) => sleeping(e, signal)))).some(Boolean);
    },
  };
}

/**
 * A webhook that starts or stops the tier's machines (`{ action, tier }`); awake once a replica answers /health
 * (the gateway's health checks bring the others in as they come up).
 */
function webhook(tier: string, url: string, endpoints: readonly string[]): WakeDriver {
  const post = async (action: 'wake' | 'sleep', signal: AbortSignal) =>
    ok(await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ action, tier }), signal }), `POST ${url}`);
  return {
    async wake(signal) {
      await post('wake', signal);
      await pollUntil(() => anyHealthy(endpoints, signal), signal);
    },
    sleep: (signal) => post('sleep', signal),
    async isAsleep(signal) {
      // one replica gone (a preempted instance) is the breaker's business; asleep is none answering
      return !(await anyHealthy(endpoints, signal));
    },
  };
}

/** The scale subresource of a Deployment/StatefulSet: PATCH spec.replicas, then wait for readyReplicas and /health. */
function kubernetes(w: WakeSpec, endpoints: readonly string[]): WakeDriver {
  const plural = w.kind === 'StatefulSet' ? 'statefulsets' : 'deployments';
  const base = `${w.api_server!.replace(/\/+$/, '')}/apis/apps/v1/namespaces/${encodeURIComponent(w.namespace!)}/${plural}/${encodeURIComponent(w.name!)}`;
  const headers = (): Record<string, string> => {
    const token = w.token ?? (w.token_file === undefined ? undefined : readFileSync(w.token_file, 'utf8').trim());
    return token ? { authorization: `Bearer ${token}` } : {};
  };
  const scale = async (replicas: number, signal: AbortSignal) =>
    ok(
      await fetch(`${base}/scale`, {
        method: 'PATCH',
        headers: { ...headers(), 'content-type': 'application/merge-patch+json' },
        body: JSON.stringify({ spec: { replicas } }),
        signal,
      }),
      `PATCH ${base}/scale`,
    );
  const get = async <T>(url: string, signal: AbortSignal): Promise<T> => {
    const res = await fetch(url, { headers: headers(), signal });
    if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status}`);
    return (await res.json()) as T;
  };
  return {
    async wake(signal) {
      await scale(w.replicas, signal);
      // the workload's own status says how many replicas are ready (the Scale subresource does not)
      await pollUntil(async () => ((await get<{ status?: { readyReplicas?: number } }>(base, signal)).status?.readyReplicas ?? 0) >= w.replicas, signal);
      await pollUntil(() => allHealthy(endpoints, signal), signal);
    },
    sleep: (signal) => scale(0, signal),
    async isAsleep(signal) {
      return ((await get<{ spec?: { replicas?: number } }>(`${base}/scale`, signal)).spec?.replicas ?? 0) === 0;
    },
  };
}

/** The driver of a tier with `wake`. */
export function wakeDriver(tier: TierView): WakeDriver {
  const w = tier.wake;
  if (w === null) throw new Error(`tier ${tier.name} has no wake driver`);
  switch (w.driver) {
    case 'vllm-sleep':
      return vllmSleep(tier.endpoints);
    case 'webhook':
      return webhook(tier.name, w.url!, tier.endpoints);
    case 'kubernetes':
      return kubernetes(w, tier.endpoints);
  }
}
