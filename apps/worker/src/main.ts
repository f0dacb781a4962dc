import type { INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ConfigError, loadConfig, nestLogLevels } from '@spot/config';
import { AppModule } from './app.module';

async function bootstrap(): Promise<void> {
  // Read here only for the log level and the grace period; ConfigModule serves the same config to the app.
  const config = loadConfig();
  let app: INestApplicationContext | null = null;
  let stopping = false;
  // Signals are handled from the first instant: a SIGTERM that arrives while the worker still boots stops it
  // cleanly once booted, instead of killing it half way.
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    setTimeout(() => process.exit(1), config.SHUTDOWN_GRACE_MS).unref();
    if (app !== null) void closeAndExit(app);
  };
  process.once('SIGTERM', stop).once('SIGINT', stop);
  // Creating the context initializes it: WorkerLifecycle checks Postgres and Redis before this returns.
  app = await NestFactory.createApplicationContext(AppModule, {
    logger: nestLogLevels(config.LOG_LEVEL),
    abortOnError: false,
  });
  if (stopping) await closeAndExit(app);
}

/** Closes every module (queue workers finish their job, connections close), then exits 0. */
async function closeAndExit(app: INestApplicationContext): Promise<void> {
  try {
    await app.close();
    process.exit(0);
  } catch (err) {
    process.stderr.write(`worker failed to stop cleanly: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }
}

bootstrap().catch((err: unknown) => {
  process.stderr.write(`worker failed to start: ${err instanceof ConfigError || err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
