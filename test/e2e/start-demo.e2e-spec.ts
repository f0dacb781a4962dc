import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import OpenAI from 'openai';
import { Browser } from '../support/console-stack';
import { freePort } from '../support/free-port';

const ROOT = resolve(__dirname, '../..');

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const j = async (r: Response | Promise<Response>): Promise<any> => (await r).json();

/** `npm start` without GitHub credentials: the labelled demo identity provider lets a newcomer click through. */
describe('npm start without GitHub credentials', () => {
  let child: ChildProcess;
  let output = '';
  const ports = { gateway: 0, console: 0, sim: 0, idp: 0 };

  beforeAll(async () => {
    for (const k of Object.keys(ports) as Array<keyof typeof ports>) ports[k] = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'start-demo-'));
    writeFileSync(
      join(dir, 'tiers.yaml'),
      `tiers:\n  - name: demo-spot\n    kind: spot\n    endpoints: [http://127.0.0.1:${ports.sim}]\n    models:\n      - id: demo-model\n        upstream: demo/upstream\n        price: { input_per_mtok: 0.05, output_per_mtok: 0.10 }\n`,
    );
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      NO_COLOR: '1',
      GATEWAY_PORT: String(ports.gateway),
      CONSOLE_PORT: String(ports.console),
      SIM_PORT: String(ports.sim),
      DEMO_IDP_PORT: String(ports.idp),
      TIERS_FILE: join(dir, 'tiers.yaml'),
      USAGE_SPOOL_DIR: join(dir, 'spool'),
      GITHUB_CLIENT_ID: '',
      GITHUB_CLIENT_SECRET: '',
    };
    child = spawn(process.execPath, [join(ROOT, 'scripts/start.mjs')], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (d: Buffer) => (output += d));
    child.stderr!.on('data', (d: Buffer) => (output += d));
    const deadline = Date.now() + 60_000;
    while (!output.includes('spotinference is up.')) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`npm start did not come up:\n${output.slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }, 90_000);

  afterAll(async () => {
    if (child && child.exitCode === null) {
      child.kill('SIGINT');
      await new Promise((r) => child.once('exit', r));
    }
  });

  it('signs in through the labelled demo identity provider, mints a key in the console, and the key works', async () => {
    expect(output).toContain(`local demo identity provider on http://127.0.0.1:${ports.idp}`);
    const browser = new Browser(`http://localhost:${ports.console}`);
    const signin = await (await browser.fetch('/signin')).text();
    expect(signin).toContain('local demo identity provider');

    const start = await browser.fetch('/auth/github');
    const authorize = start.headers.get('location')!;
    expect(authorize.startsWith(`http://127.0.0.1:${ports.idp}/login/oauth/authorize?`)).toBe(true);
    const consent = await (await fetch(authorize)).text();
    expect(consent).toContain('Local demo identity provider (not GitHub)');
    const handle = /name="authorization_request" value="([^"]+)"/.exec(consent)![1];
    const approved = await fetch(`http://127.0.0.1:${ports.idp}/login/oauth/authorize`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ authorization_request: handle, login: 'demo-owner', decision: 'approve' }).toString(),
      redirect: 'manual',
    });
    const callback = new URL(approved.headers.get('location')!);
    expect(callback.origin).toBe(`http://localhost:${ports.console}`);
    const done = await browser.fetch(`${callback.pathname}${callback.search}`);
    expect(done.headers.get('location')).toBe('/orgs');
    browser.csrfToken = (await j(browser.fetch('/api/me'))).csrfToken;

    const slug = `demo-${Math.random().toString(36).slice(2, 10)}`;
    expect((await browser.api('POST', '/api/orgs', { slug, name: 'Demo' })).status).toBe(201);
    const { key } = await j(browser.api('POST', `/api/orgs/${slug}/keys`, { name: 'demo' }));
    const client = new OpenAI({ baseURL: `http://127.0.0.1:${ports.gateway}/v1`, apiKey: key, maxRetries: 0 });
    const r = await client.chat.completions.create({ model: 'demo-model', messages: [{ role: 'user', content: 'Hello' }] });
    expect(r.choices[0].message.content).toEqual(expect.any(String));
  });

  it('stops everything on Ctrl-C with exit code 0', async () => {
    child.kill('SIGINT');
    const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    expect(code).toBe(0);
  });
});
