import type { LogLevel } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import type { AppConfig } from '@spot/config';
import { AppModule } from './app.module';

const LEVELS: Record<AppConfig['LOG_LEVEL'], LogLevel[] | false> = {
  trace: ['fatal', 'error', 'warn', 'log', 'debug', 'verbose'],
  debug: ['fatal', 'error', 'warn', 'log', 'debug'],
  info: ['fatal', 'error', 'warn', 'log'],
  warn: ['fatal', 'error', 'warn'],
  error: ['fatal', 'error'],
  fatal: ['fatal'],
  silent: false,
};

/** Nest's log levels for our LOG_LEVEL. */
export function nestLogLevels(level: AppConfig['LOG_LEVEL']): LogLevel[] | false {
  return LEVELS[level];
}

/** Builds the console on Fastify (not listening yet): main.ts and tests share it. */
export function createConsoleApp(options: { logger?: LogLevel[] | false } = {}): Promise<NestFastifyApplication> {
  return NestFactory.create<NestFastifyApplication>(AppModule, new FastifyAdapter(), {
    abortOnError: false,
    ...(options.logger !== undefined ? { logger: options.logger } : {}),
  });
}
