import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeWakeWebhook {
  readonly url: string;
  /** Every call, oldest first: `{ action, tier }`. */
  readonly calls: Array<{ action: string; tier: string }>;
  /** The next calls answer this status (e.g. 500) instead of 202. */
  failNext(status: number, times?: number): void;
  close(): Promise<void>;
}

/**
 * A webhook target like a cloud function that starts or stops a tier's machines: POST `{ action: 'wake' |
 * 'sleep', tier }` → 202, then `onAction` does the work (e.g. starts a vllm-sim after a delay).
 */
export async function startFakeWakeWebhook(onAction: (action: string, tier: string) => void): Promise<FakeWakeWebhook> {
  const calls: FakeWakeWebhook['calls'] = [];
  let failures: { status: number; times: number } | null = null;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let body: { action?: unknown; tier?: unknown };
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as typeof body;
      } catch {
        res.writeHead(400).end('body must be JSON');
        return;
      }
      if (failures !== null && failures.times > 0) {
        failures.times--;
        res.writeHead(failures.status).end('injected failure');
        return;
      }
      if ((body.action !== 'wake' && body.action !== 'sleep') || typeof body.tier !== 'string') {
        res.writeHead(422).end('expected { action: wake | sleep, tier }');
        return;
      }
      calls.push({ action: body.action, tier: body.tier });
      res.writeHead(202, { 'content-type': 'application/json' }).end(JSON.stringify({ accepted: true }));
      onAction(body.action, body.tier);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hooks/tier`,
    calls,
    failNext(status, times = 1) {
      failures = { status, times };
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
