import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { createConsoleApp } from '../console-app';

// Over a real socket on port 0: app.inject() pulls light-my-request -> `cookie`, an ESM-only package that
// jest.config.js does not transform yet.
describe('console app', () => {
  let app: NestFastifyApplication;
  let base: string;

  beforeAll(async () => {
    app = await createConsoleApp({ logger: false });
    await app.listen(0, '127.0.0.1');
    base = await app.getUrl();
  });

  afterAll(async () => {
    await app.close();
  });

  it('GET /healthz answers 200 {"status":"ok"}', async () => {
    const res = await fetch(`${base}/healthz`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await res.json()).toEqual({ status: 'ok' });
  });

  it('GET / is an HTML page that shows how to mint a key with the CLI', async () => {
    const res = await fetch(`${base}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const body = await res.text();
    expect(body).toContain('<!doctype html>');
    expect(body).toContain('npm run cli -- key create --org');
  });

  it('answers 404 for unknown paths', async () => {
    expect((await fetch(`${base}/nope`)).status).toBe(404);
  });
});
