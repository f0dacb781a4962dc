import { randomUUID } from 'node:crypto';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import type { AppConfig } from '@spot/config';
import { GatewayModule } from './app.module';

/** `req_` + 32 hex, like OpenAI's request ids. */
export function newRequestId(): string {
  return `req_${randomUUID().replaceAll('-', '')}`;
}

/** Builds (does not start) the gateway for `config`: used by main.ts, the e2e tests and the benchmark. */
export async function createGatewayApp(config: AppConfig, options: { logger?: boolean } = {}): Promise<NestFastifyApplication> {
  const adapter = new FastifyAdapter({
    bodyLimit: config.GATEWAY_BODY_LIMIT,
    genReqId: newRequestId,
    requestIdHeader: false, // never trust a client-chosen id: it keys the usage event
    logger: false,
    keepAliveTimeout: 65_000,
    return503OnClosing: true,
  });
  const app = await NestFactory.create<NestFastifyApplication>(GatewayModule.forRoot(config), adapter, {
    logger: options.logger === false ? false : config.LOG_LEVEL === 'silent' ? false : undefined,
    abortOnError: false,
  });
  return app;
}
