import { Logger } from '@nestjs/common';
import { ConfigError, loadConfig } from '@spot/config';
import { createConsoleApp } from './console-app';

async function bootstrap(): Promise<void> {
  // Read here only for the log level and the address; ConfigModule serves the same config to the app.
  const config = loadConfig();
  const app = await createConsoleApp(config);
  // On SIGTERM/SIGINT: stop accepting, finish in-flight requests, close, exit 0.
  app.enableShutdownHooks(['SIGTERM', 'SIGINT'], { useProcessExit: true });
  const forceExit = () => setTimeout(() => process.exit(1), config.SHUTDOWN_GRACE_MS).unref();
  process.once('SIGTERM', forceExit).once('SIGINT', forceExit);

  await app.listen(config.CONSOLE_PORT, config.CONSOLE_HOST);
  new Logger('Console').log(`listening on ${await app.getUrl()}`);
}

bootstrap().catch((err: unknown) => {
  process.stderr.write(`console failed to start: ${err instanceof ConfigError || err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
