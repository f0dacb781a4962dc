import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** How the sidecar words a notice: AWS's instance-action body, seconds left, or GCP's `preempted` text. */
export type NoticeFormat = 'aws' | 'deadline_s' | 'gcp';

export interface FakeNoticeSidecar {
  /** `http://127.0.0.1:<port>`; each replica is a path under it, e.g. `${url}/notice/8090`. */
  readonly url: string;
  /** The replica at `path` goes away `inS` seconds from now (answers 200 from now on). */
  preempt(path: string, inS: number, format?: NoticeFormat): void;
  /** No notice at `path` any more (answers 404, or `FALSE` in the gcp format). */
  clear(path: string): void;
  /** GET requests received per path. */
  polls(path: string): number;
  /** The next answers are this status (e.g. 500), `times` times. */
  failNext(status: number, times?: number): void;
  close(): Promise<void>;
}

/**
 * A preemption notice sidecar like the one a spot machine runs next to its engine, relaying the cloud's metadata:
 * `GET <path>` answers 404 while no notice is set (AWS's `/latest/meta-data/spot/instance-action` does), and once
 * one is set 200 with `{"action": "terminate", "time": "<ISO 8601>"}` (aws), `{"deadline_s": <seconds left>}`, or
 * the text `TRUE` (gcp, whose `instance/preempted` answers `FALSE` before). One server serves many replicas, one
 * per path. Settable from the test (`preempt`, `clear`) or over HTTP: `PUT <path>` with `{"in_s": N, "format"?}`,
 * `DELETE <path>`.
 */
export async function startFakeNoticeSidecar(): Promise<FakeNoticeSidecar> {
  const notices = new Map<string, { at: number; format: NoticeFormat }>();
  const cleared = new Map<string, NoticeFormat>();
  const polls = new Map<string, number>();
  let failures: { status: number; times: number } | null = null;
  const preempt = (path: string, inS: number, format: NoticeFormat = 'aws') => {
    notices.set(path, { at: Date.now() + inS * 1000, format });
  };
  const clear = (path: string) => {
    const n = notices.get(path);
    if (n !== undefined) cleared.set(path, n.format);
    notices.delete(path);
  };
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method === 'PUT') {
        let body: { in_s?: unknown; format?: unknown };
        try {
          body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as typeof body;
        } catch {
          res.writeHead(400).end('body must be JSON');
          return;
        }
        if (typeof body.in_s !== 'number' || (body.format !== undefined && !['aws', 'deadline_s', 'gcp'].includes(String(body.format)))) {
          res.writeHead(422).end('expected { in_s: number, format?: aws | deadline_s | gcp }');
          return;
        }
        preempt(path, body.in_s, body.format as NoticeFormat | undefined);
        res.writeHead(204).end();
        return;
      }
      if (req.method === 'DELETE') {
        clear(path);
        res.writeHead(204).end();
        return;
      }
      if (req.method !== 'GET') {
        res.writeHead(405).end();
        return;
      }
      polls.set(path, (polls.get(path) ?? 0) + 1);
      if (failures !== null && failures.times > 0) {
        failures.times--;
        res.writeHead(failures.status).end('injected failure');
        return;
      }
      const n = notices.get(path);
      if (n === undefined) {
        if (cleared.get(path) === 'gcp') res.writeHead(200, { 'content-type': 'application/text' }).end('FALSE');
        else res.writeHead(404, { 'content-type': 'text/html' }).end('<html><body><h1>404 - Not Found</h1></body></html>');
        return;
      }
      switch (n.format) {
        case 'aws':
          // AWS gives the time to the second, in UTC
          res.writeHead(200, { 'content-type': 'text/plain' }).end(JSON.stringify({ action: 'terminate', time: new Date(n.at).toISOString().replace(/\.\d{3}Z$/, 'Z') }));
          return;
        case 'deadline_s':
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ deadline_s: Math.max(0, (n.at - Date.now()) / 1000) }));
          return;
        case 'gcp':
          res.writeHead(200, { 'content-type': 'application/text' }).end('TRUE');
          return;
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    preempt,
    clear,
    polls: (path) => polls.get(path) ?? 0,
    failNext(status, times = 1) {
      failures = { status, times };
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
