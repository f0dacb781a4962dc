import 'reflect-metadata';
import cluster from 'node:cluster';
import { Logger } from '@nestjs/common';
import { ConfigError, loadConfig } from '@spot/config';
import { TiersFileError } from '@spot/tiers';
import { GatewayPrimary, gatewayProcesses } from './lifecycle/gateway-primary';

async function main(): Promise<void> {
  const config = loadConfig();
  const processes = gatewayProcesses(config);
  if (processes > 1 && cluster.isPrimary) {
    new GatewayPrimary(processes, config).run();
    return;
  }
  // loaded here, so that the primary of a multi-process gateway does not load the whole app
  const { createGatewayApp } = await import('./gateway-app');
  const app = await createGatewayApp(config);
  await app.listen(config.GATEWAY_PORT, config.GATEWAY_HOST);
  // Nest's own signal hooks re-raise the signal after closing (exit by signal); a drained stop is exit 0. The
  // handlers stay: a worker gets a terminal's Ctrl-C twice (from the terminal and from its primary)
  let draining = false;
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => {
      if (draining) return;
      draining = true;
      new Logger('Gateway').log(`${signal}: draining`);
      app.close().then(
        () => process.exit(0),
        (err: unknown) => {
          process.stderr.write(`gateway: shutdown failed: ${err instanceof Error ? err.stack : String(err)}\n`);
          process.exit(1);
        },
      );
    });
  }
  new Logger('Gateway').log(`OpenAI-compatible API on http://${config.GATEWAY_HOST}:${config.GATEWAY_PORT}/v1 (tiers from ${config.TIERS_FILE})`);
}

main().catch((err: unknown) => {
  // configuration mistakes get their message alone; anything else its stack
  const known = err instanceof ConfigError || err instanceof TiersFileError;
  process.stderr.write(`gateway: ${known ? (err as Error).message : err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
