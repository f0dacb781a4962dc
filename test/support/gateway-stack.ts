import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { type AppConfig, loadConfig } from '@spot/config';
import { ApiKeysRepository, OrgsRepository, UsageEventsRepository } from '@spot/db';
import { mintApiKey } from '@spot/keys';
import OpenAI from 'openai';
import { createGatewayApp } from '../../apps/gateway/src/gateway-app';
import { type SimServer, startSim } from '../../apps/vllm-sim/src/sim-server';

/** The engine names the test tier serves, and the ids clients use for them. */
export const CHAT_MODEL = 'llama-test';
export const CHAT_UPSTREAM = 'meta-llama/Llama-3.1-8B-Instruct';
export const OTHER_MODEL = 'qwen-test';
export const EMBED_MODEL = 'embed-test';

export interface GatewayStack {
  sim: SimServer;
  app: NestFastifyApplication;
  config: AppConfig;
  baseURL: string;
  url: string;
  orgId: string;
  /** A key for every model. */
  key: string;
  keyId: string;
  client: OpenAI;
  newKey(opts?: { models?: string[]; expiresAt?: Date | null; rpmLimit?: number | null; tpmLimit?: number | null }): Promise<{ key: string; id: string; secretHash: string }>;
  usageRow(requestId: string, timeoutMs?: number): ReturnType<UsageEventsRepository['findByRequestId']>;
  close(): Promise<void>;
}

export function tiersYaml(simUrl: string): string {
  return `tiers:
  - name: test-spot
    kind: spot
    endpoints: [${simUrl}]
    models:
      - id: ${CHAT_MODEL}
        upstream: ${CHAT_UPSTREAM}
        price: { input_per_mtok: 0.05, output_per_mtok: 0.10 }
      - id: ${OTHER_MODEL}
        price: { input_per_mtok: 0.04, output_per_mtok: 0.08 }
      - id: ${EMBED_MODEL}
        price: { input_per_mtok: 0.01, output_per_mtok: 0 }
`;
}

/**
 * vllm-sim + the gateway (in this process, on a random port) over the real test Postgres and Redis, with an
 * org and a key made through the product's own repositories. Unique Redis prefix and spool dir per stack.
 */
export async function startGatewayStack(
  env: Record<string, string> = {},
  simOptions: { ttftMs?: number; itlMs?: number; outputTokens?: number; prefixCaching?: boolean; extraModels?: string[] } = {},
  /** The tiers file for the sim's URL (default {@link tiersYaml}). */
  tiers: (simUrl: string) => string = tiersYaml,
): Promise<GatewayStack> {
  const { extraModels = [], ...simRest } = simOptions;
  const sim = await startSim({ models: [CHAT_UPSTREAM, OTHER_MODEL, EMBED_MODEL, ...extraModels], ...simRest });
  const dir = mkdtempSync(join(tmpdir(), 'gw-stack-'));
  const tiersFile = join(dir, 'tiers.yaml');
  writeFileSync(tiersFile, tiers(sim.url));
  const config = loadConfig({
    ...process.env,
    TIERS_FILE: tiersFile,
    GATEWAY_PORT: '0',
    REDIS_PREFIX: `test:${randomUUID()}:`,
    USAGE_SPOOL_DIR: join(dir, 'spool'),
    USAGE_FLUSH_MS: '20',
    SHUTDOWN_GRACE_MS: '5000',
    LOG_LEVEL: 'silent',
    ...env,
  });
  const app = await createGatewayApp(config, { logger: false });
  await app.listen(0, '127.0.0.1');
  const url = await app.getUrl();
  const baseURL = `${url.replace('[::1]', '127.0.0.1')}/v1`;
  const orgs = app.get(OrgsRepository);
  const keys = app.get(ApiKeysRepository);
  const usage = app.get(UsageEventsRepository);
  const org = await orgs.create(`t-${randomUUID().slice(0, 18)}`, 'Test org');
  if (!org) throw new Error('org slug collision');
  const newKey: GatewayStack['newKey'] = async (opts = {}) => {
    const minted = mintApiKey();
    const row = await keys.create({
      orgId: org.id,
      name: 'test',
      prefix: minted.prefix,
      secretHash: minted.secretHash,
      allowedModels: opts.models ?? [],
      expiresAt: opts.expiresAt ?? null,
      createdById: null,
      rpmLimit: opts.rpmLimit ?? null,
      tpmLimit: opts.tpmLimit ?? null,
    });
    return { key: minted.key, id: row.id, secretHash: minted.secretHash };
  };
  const first = await newKey();
  const usageRow: GatewayStack['usageRow'] = async (requestId, timeoutMs = 5000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const row = await usage.findByRequestId(requestId);
      if (row || Date.now() > deadline) return row;
      await new Promise((r) => setTimeout(r, 25));
    }
  };
  return {
    sim,
    app,
    config,
    url: url.replace('[::1]', '127.0.0.1'),
    baseURL,
    orgId: org.id,
    key: first.key,
    keyId: first.id,
    client: new OpenAI({ baseURL, apiKey: first.key, maxRetries: 0 }),
    newKey,
    usageRow,
    async close() {
      await app.close();
      await sim.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
