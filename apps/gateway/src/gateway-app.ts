import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { type AppConfig, nestLogLevels } from '@spot/config';
import { GatewayModule } from './app.module';
import { clientErrorHandler, frameworkErrorHandler } from './errors/client-errors';
import { drainLimit } from './http/early-answer';
import { clientLimits, FastPath } from './proxy/fast-path';
import { newRequestId } from './proxy/request-id';

/** Builds (does not start) the gateway for `config`: used by main.ts, the e2e tests and the benchmark. */
export async function createGatewayApp(config: AppConfig, options: { logger?: boolean } = {}): Promise<NestFastifyApplication> {
  const fastPath = new FastPath(clientLimits(config));
  const adapter = new FastifyAdapter({
    serverFactory: fastPath.serverFactory, // which also sets the server's timeouts
    bodyLimit: config.GATEWAY_BODY_LIMIT,
    genReqId: newRequestId,
    requestIdHeader: false, // never trust a client-chosen id: it keys the usage event
    logger: false,
    return503OnClosing: true,
    // what Node and the router refuse before any route runs leaves in the OpenAI envelope too
    clientErrorHandler,
    frameworkErrors: frameworkErrorHandler(drainLimit(config)),
  });
  const app = await NestFactory.create<NestFastifyApplication>(GatewayModule.forRoot(config, fastPath), adapter, {
    logger: options.logger === false ? false : nestLogLevels(config.LOG_LEVEL),
    abortOnError: false,
  });
  return app;
}
