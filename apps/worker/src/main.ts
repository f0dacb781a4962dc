import { NestFactory } from '@nestjs/core';
import { ConfigError, loadConfig, nestLogLevels } from '@spot/config';
import { AppModule } from './app.module';

async function bootstrap(): Promise<void> {
  // Read here only for the log level and the grace period; ConfigModule serves the same config to the app.
  const config = loadConfig();
  // Creating the context initializes it: WorkerLifecycle checks Postgres and Redis before this returns.
  const app = await NestFactory.createApplicationContext(AppModule, {
    logger: nestLogLevels(config.LOG_LEVEL),
    abortOnError: false,
  });
  // On SIGTERM/SIGINT: close every module (connections, later the queue workers), then exit 0.
  app.enableShutdownHooks(['SIGTERM', 'SIGINT'], { useProcessExit: true });
  const forceExit = () => setTimeout(() => process.exit(1), config.SHUTDOWN_GRACE_MS).unref();
  process.once('SIGTERM', forceExit).once('SIGINT', forceExit);
}

bootstrap().catch((err: unknown) => {
  process.stderr.write(`worker failed to start: ${err instanceof ConfigError || err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
