import fastifyCookie from '@fastify/cookie';
import type { LoggerService } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { type AppConfig, loadConfig, nestLogLevels } from '@spot/config';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ConsoleModule } from './app.module';
import { addSecurityHeaders } from './security-headers';

const BODY_LIMIT = 1 << 20;

/** Builds (does not start) the console for `config`: main.ts and the tests share it. */
export async function createConsoleApp(
  config: AppConfig = loadConfig(),
  options: { logger?: false | LoggerService } = {},
): Promise<NestFastifyApplication> {
  const adapter = new FastifyAdapter({ bodyLimit: BODY_LIMIT, trustProxy: true });
  const app = await NestFactory.create<NestFastifyApplication>(ConsoleModule.forRoot(config), adapter, {
    logger: options.logger ?? nestLogLevels(config.LOG_LEVEL),
    abortOnError: false,
    // JSON and urlencoded forms are parsed by Nest; the raw body is kept for signature checks (Stripe webhooks)
    rawBody: true,
  });
  const fastify = app.getHttpAdapter().getInstance() as FastifyInstance;
  app.useBodyParser('application/json', { bodyLimit: BODY_LIMIT }, emptyJsonIsEmptyObject(fastify));
  addSecurityHeaders(fastify);
  await app.register(fastifyCookie);
  return app;
}

/**
 * Fastify's JSON parser, except that an empty body is `{}`: many HTTP clients send
 * `Content-Type: application/json` on every call, a body-less DELETE or POST /auth/logout included.
 * Anything else (whitespace, `{nope`) is still parsed, and refused, by Fastify's own secure parser.
 */
function emptyJsonIsEmptyObject(fastify: FastifyInstance) {
  const { onProtoPoisoning, onConstructorPoisoning } = fastify.initialConfig as { onProtoPoisoning?: 'error'; onConstructorPoisoning?: 'error' };
  const parse = fastify.getDefaultJsonParser(onProtoPoisoning ?? 'error', onConstructorPoisoning ?? 'error');
  return (req: FastifyRequest, body: Buffer, done: (err: Error | null, body?: unknown) => void): void => {
    if (body.length === 0) {
      done(null, {});
      return;
    }
    parse(req, body as unknown as string, done);
  };
}
