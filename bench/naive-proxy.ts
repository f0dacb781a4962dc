/**
 * The calibration baseline of the overhead bench: the least a Node proxy can do (no auth, no limits, no
 * usage): read the body, rename the model, forward with undici, copy the stream back.
 *   node dist/bench/naive-proxy.js <port> <upstream base URL> <upstream model>
 */
import http from 'node:http';
import { Pool } from 'undici';

const [port, upstream, model] = process.argv.slice(2);
const pool = new Pool(upstream, { connections: 128 });

http
  .createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
      body.model = model;
      pool
        .request({ method: 'POST', path: req.url ?? '/', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
        .then(async (up) => {
          res.writeHead(up.statusCode, { 'content-type': String(up.headers['content-type'] ?? 'application/json') });
          for await (const c of up.body) res.write(c);
          res.end();
        })
        .catch(() => res.destroy());
    });
  })
  .listen(Number(port), '127.0.0.1');

process.on('SIGTERM', () => process.exit(0));
