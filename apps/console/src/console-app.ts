import fastifyCookie from '@fastify/cookie';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { type AppConfig, loadConfig, nestLogLevels } from '@spot/config';
import { ConsoleModule } from './app.module';

/** Builds (does not start) the console for `config`: main.ts and the tests share it. */
export async function createConsoleApp(config: AppConfig = loadConfig(), options: { logger?: boolean } = {}): Promise<NestFastifyApplication> {
  const adapter = new FastifyAdapter({ bodyLimit: 1 << 20, trustProxy: true });
  const app = await NestFactory.create<NestFastifyApplication>(ConsoleModule.forRoot(config), adapter, {
    logger: options.logger === false ? false : nestLogLevels(config.LOG_LEVEL),
    abortOnError: false,
    // JSON and urlencoded forms are parsed by Nest; the raw body is kept for signature checks (Stripe webhooks)
    rawBody: true,
  });
  await app.register(fastifyCookie);
  return app;
}
