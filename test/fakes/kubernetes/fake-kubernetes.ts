import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One Deployment or StatefulSet the fake serves: its desired and ready replicas. */
export interface FakeWorkload {
  replicas: number;
  readyReplicas: number;
}

export interface FakeKubernetesOptions {
  /** Required bearer token; unset: no auth. */
  token?: string;
  /** How long scaling up takes before readyReplicas follows (default 100 ms). */
  readyDelayMs?: number;
  /** Called when a workload's desired replicas change (to start or stop what it runs). */
  onScale?: (key: string, replicas: number) => Promise<void> | void;
}

export interface FakeKubernetes {
  readonly url: string;
  /** `<namespace>/<plural>/<name>` → workload. */
  readonly workloads: Map<string, FakeWorkload>;
  readonly requests: Array<{ method: string; path: string; body: unknown }>;
  close(): Promise<void>;
}

const PATH = /^\/apis\/apps\/v1\/namespaces\/([^/]+)\/(deployments|statefulsets)\/([^/]+)(\/scale)?$/;

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

function status(code: number, reason: string, message: string) {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * A fake Kubernetes API server for the apps/v1 scale subresource: GET and PATCH (merge-patch) of
 * `.../deployments|statefulsets/<name>/scale` (autoscaling/v1 Scale), and GET of the workload with
 * `status.readyReplicas`, which follows `spec.replicas` after `readyDelayMs`. Answers Kubernetes' Status
 * objects for errors (401, 404, 415).
 */
export async function startFakeKubernetes(opts: FakeKubernetesOptions = {}): Promise<FakeKubernetes> {
  const workloads = new Map<string, FakeWorkload>();
  const requests: FakeKubernetes['requests'] = [];
  const server: Server = createServer((req, res) => {
    void (async () => {
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      const raw = req.method === 'PATCH' ? await readBody(req) : '';
      requests.push({ method: req.method ?? '', path, body: raw ? (JSON.parse(raw) as unknown) : undefined });
      if (opts.token && req.headers.authorization !== `Bearer ${opts.token}`) {
        send(res, 401, status(401, 'Unauthorized', 'Unauthorized'));
        return;
      }
      const m = PATH.exec(path);
      const key = m ? `${m[1]}/${m[2]}/${m[3]}` : '';
      const w = workloads.get(key);
      if (!m || !w) {
        send(res, 404, status(404, 'NotFound', `${m?.[2] ?? 'resource'} "${m?.[3] ?? path}" not found`));
        return;
      }
      const scaleView = () => ({
        kind: 'Scale',
        apiVersion: 'autoscaling/v1',
        metadata: { name: m[3], namespace: m[1] },
        spec: { replicas: w.replicas },
        status: { replicas: w.readyReplicas },
      });
      if (m[4] && req.method === 'GET') return send(res, 200, scaleView());
      if (m[4] && req.method === 'PATCH') {
        if (!String(req.headers['content-type']).startsWith('application/merge-patch+json')) {
          send(res, 415, status(415, 'UnsupportedMediaType', `the body of the request was in an unknown format`));
          return;
        }
        const replicas = (JSON.parse(raw) as { spec?: { replicas?: number } }).spec?.replicas;
        if (typeof replicas !== 'number' || replicas < 0) {
          send(res, 422, status(422, 'Invalid', 'spec.replicas: Invalid value'));
          return;
        }
        w.replicas = replicas;
        await opts.onScale?.(key, replicas);
        setTimeout(() => {
          if (w.replicas === replicas) w.readyReplicas = replicas;
        }, replicas === 0 ? 0 : (opts.readyDelayMs ?? 100));
        if (replicas === 0) w.readyReplicas = 0;
        return send(res, 200, scaleView());
      }
      if (!m[4] && req.method === 'GET') {
        return send(res, 200, { kind: m[2] === 'deployments' ? 'Deployment' : 'StatefulSet', apiVersion: 'apps/v1', metadata: { name: m[3], namespace: m[1] }, spec: { replicas: w.replicas }, status: { replicas: w.readyReplicas, readyReplicas: w.readyReplicas } });
      }
      send(res, 405, status(405, 'MethodNotAllowed', 'method not allowed'));
    })().catch((err: unknown) => send(res, 500, status(500, 'InternalError', String(err))));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    workloads,
    requests,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
