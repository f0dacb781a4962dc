import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import OpenAI from 'openai';
import { type Browser, chromium } from 'playwright-core';
import { chromiumPath } from '../support/chromium';
import { type ConsoleStack, newGitHubUser, startConsoleStack } from '../support/console-stack';
import { CHAT_MODEL, type GatewayStack, startGatewayStack } from '../support/gateway-stack';

const ARTIFACTS = resolve(__dirname, '../artifacts');
const messages = [{ role: 'user' as const, content: 'hi' }];

/**
 * The whole customer journey in a real browser (Debian's chromium or CHROMIUM_PATH, driven by playwright-core): sign
 * in through the fake GitHub's consent page, create an org, mint a key, use it with the openai SDK, revoke it, see 401.
 */
describe('console in Chromium', () => {
  let consoleStack: ConsoleStack;
  let gateway: GatewayStack;
  let browser: Browser;

  beforeAll(async () => {
    // the browser project's global setup found or installed it; a missing browser fails here, never skips
    const executablePath = chromiumPath();
    mkdirSync(ARTIFACTS, { recursive: true });
    // one Redis prefix: the gateway hears the console's revocations; the console shows the gateway's URL
    const prefix = `test:${randomUUID()}:`;
    gateway = await startGatewayStack({ REDIS_PREFIX: prefix });
    consoleStack = await startConsoleStack({ REDIS_PREFIX: prefix, GATEWAY_PUBLIC_URL: gateway.baseURL.replace(/\/v1$/, '') }, { consentPage: true });
    browser = await chromium.launch({
      executablePath,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await gateway?.close();
    await consoleStack?.close();
  });

  it('sign in, create an org, mint a key, call the API with it, revoke it, get 401', async () => {
    const user = newGitHubUser('browser');
    consoleStack.github.addUser(user);
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 }, permissions: ['clipboard-read', 'clipboard-write'] });
    page.setDefaultTimeout(15_000);
    // the Content-Security-Policy must not break the console: a blocked script or style shows up here (the fake
    // GitHub's consent page is not the console's: its messages are left out)
    const problems: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error' && m.location().url.startsWith(consoleStack.base)) problems.push(`console: ${m.text()} (${m.location().url})`);
    });
    page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
    await page.exposeFunction('reportCspViolation', (v: string) => problems.push(`csp: ${v}`));
    await page.addInitScript({
      content: "document.addEventListener('securitypolicyviolation', (e) => { void window.reportCspViolation(e.violatedDirective + ' ' + e.blockedURI + ' at ' + e.documentURI); });",
    });

    await page.goto(`${consoleStack.base}/`);
    await expect(page.getByText('local demo identity provider').count()).resolves.toBe(1);
    await page.getByRole('link', { name: /Sign in with GitHub/ }).click();
    // the fake GitHub's consent page: authorize as our test account
    await page.locator(`form:has(input[name="login"][value="${user.login}"]) button.approve`).click();
    await page.waitForURL(`${consoleStack.base}/orgs`);

    const slug = `web-${Math.random().toString(36).slice(2, 10)}`;
    await page.getByLabel('Name').fill('Browser Org');
    await page.getByLabel('Slug').fill(slug);
    await page.getByRole('button', { name: 'Create org' }).click();
    await page.waitForURL(`${consoleStack.base}/orgs/${slug}/keys`);

    await page.getByLabel('Name').fill('from-chromium');
    await page.getByRole('button', { name: 'Create key' }).click();
    await page.waitForURL(/\/keys\/created\//);
    const key = await page.getByTestId('new-key').inputValue();
    expect(key).toMatch(/^sk-spot-/);
    await expect(page.getByText('you will not see it again').count()).resolves.toBe(1);
    await page.screenshot({ path: join(ARTIFACTS, 'console-key-created.png'), fullPage: true });
    // the progressive-enhancement copy button puts the whole key on the clipboard
    await page.getByRole('button', { name: 'Copy' }).click();
    await page.getByRole('button', { name: 'Copied' }).waitFor();
    await expect(page.evaluate('navigator.clipboard.readText()')).resolves.toBe(key);

    // what a customer pastes into an SDK: the base URL and key as the page shows them
    const baseURL = /OPENAI_BASE_URL=(\S+)/.exec(await page.locator('pre').first().innerText())![1];
    expect(baseURL).toBe(gateway.baseURL);
    const client = new OpenAI({ baseURL, apiKey: key, maxRetries: 0 });
    const answer = await client.chat.completions.create({ model: CHAT_MODEL, messages });
    expect(answer.choices[0].message.content).toEqual(expect.any(String));

    await page.getByRole('link', { name: 'Done: back to the keys' }).click();
    await expect(page.locator('table').getByText('from-chromium').count()).resolves.toBe(1);
    await expect(page.content()).resolves.not.toContain(key);
    await page.screenshot({ path: join(ARTIFACTS, 'console-keys.png'), fullPage: true });

    await page.getByRole('link', { name: 'Edit from-chromium' }).click();
    await page.getByLabel('Requests per minute').fill('600');
    await page.getByRole('button', { name: 'Save changes' }).click();
    await expect(page.getByRole('status').textContent()).resolves.toContain('Saved.');
    await expect(page.getByLabel('Requests per minute').inputValue()).resolves.toBe('600');
    await page.screenshot({ path: join(ARTIFACTS, 'console-key-settings.png'), fullPage: true });

    await page.getByRole('link', { name: 'API keys' }).click();
    await page.getByRole('link', { name: 'Revoke from-chromium' }).click();
    await page.getByRole('button', { name: 'Revoke key' }).click();
    await page.waitForURL(`${consoleStack.base}/orgs/${slug}/keys`);
    await expect(page.locator('table').getByText('revoked').count()).resolves.toBe(1);
    await page.screenshot({ path: join(ARTIFACTS, 'console-key-revoked.png'), fullPage: true });

    const t0 = Date.now();
    let err: unknown;
    while (Date.now() - t0 < 2_000) {
      err = await client.chat.completions.create({ model: CHAT_MODEL, messages }).then(() => undefined, (e: unknown) => e);
      if (err !== undefined) break;
    }
    expect(err).toBeInstanceOf(OpenAI.AuthenticationError);
    expect(err).toMatchObject({ status: 401, code: 'invalid_api_key' });

    // the pages were styled by the served stylesheet (CSP: style-src 'self'), and nothing was blocked
    await expect(page.evaluate('getComputedStyle(document.querySelector("header")).backgroundColor')).resolves.toBe('rgb(29, 36, 51)');
    expect(problems).toEqual([]);
  }, 90_000);
});
