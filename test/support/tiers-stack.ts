import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { type AppConfig, loadConfig } from '@spot/config';
import { ApiKeysRepository, OrgsRepository } from '@spot/db';
import { mintApiKey } from '@spot/keys';
import OpenAI from 'openai';
import { createGatewayApp } from '../../apps/gateway/src/gateway-app';

export const TIER_UPSTREAM = 'meta-llama/Llama-3.1-8B-Instruct';
export const TIER_ADMIN_TOKEN = 'admin-token-for-tier-tests-0000000';

/** One tier of a tiers file, for tests: `extra` is more YAML of the tier (wake, idle_sleep_s...), indented 4. */
export function tierYaml(name: string, kind: 'spot' | 'on-demand', url: string, model: string, extra = ''): string {
  return `  - name: ${name}\n    kind: ${kind}\n    endpoints: [${url}]\n${extra}    models:\n      - { id: ${model}, upstream: ${TIER_UPSTREAM}, price: { input_per_mtok: 0.05, output_per_mtok: 0.10 } }\n`;
}

export interface TierGateway {
  app: NestFastifyApplication;
  config: AppConfig;
  root: string;
  client: OpenAI;
  admin(): Promise<{ tiers: Array<{ name: string; state: string; history: Array<{ state: string }> }> }>;
}

/** An in-process gateway over `tiers` (YAML) with its own org and key, on a random port. `ADMIN_TOKEN: ''` unsets it. */
export async function startTierGateway(tiers: string, env: Record<string, string> = {}): Promise<TierGateway> {
  const dir = mkdtempSync(join(tmpdir(), 'tier-gw-'));
  writeFileSync(join(dir, 'tiers.yaml'), tiers);
  const vars: Record<string, string | undefined> = {
    ...process.env,
    TIERS_FILE: join(dir, 'tiers.yaml'),
    REDIS_PREFIX: `test:${randomUUID()}:`,
    USAGE_SPOOL_DIR: join(dir, 'spool'),
    USAGE_FLUSH_MS: '20',
    LOG_LEVEL: 'silent',
    ADMIN_TOKEN: TIER_ADMIN_TOKEN,
    ...env,
  };
  if (vars.ADMIN_TOKEN === '') delete vars.ADMIN_TOKEN;
  const config = loadConfig(vars);
  const app = await createGatewayApp(config, { logger: false });
  await app.listen(0, '127.0.0.1');
  const root = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  const org = await app.get(OrgsRepository).create(`tg-${randomUUID().slice(0, 12)}`, 'Tiers');
  const minted = mintApiKey();
  await app.get(ApiKeysRepository).create({ orgId: org!.id, name: 'tiers', prefix: minted.prefix, secretHash: minted.secretHash, allowedModels: [], expiresAt: null, createdById: null });
  return {
    app,
    config,
    root,
    client: new OpenAI({ baseURL: `${root}/v1`, apiKey: minted.key, maxRetries: 0 }),
    admin: async () => (await (await fetch(`${root}/admin/tiers`, { headers: { authorization: `Bearer ${TIER_ADMIN_TOKEN}` } })).json()) as Awaited<ReturnType<TierGateway['admin']>>,
  };
}
