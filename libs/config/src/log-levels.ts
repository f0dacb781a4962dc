import type { LogLevel } from '@nestjs/common';
import type { AppConfig } from './config';

const LEVELS: Readonly<Record<AppConfig['LOG_LEVEL'], LogLevel[] | false>> = {
  trace: ['fatal', 'error', 'warn', 'log', 'debug', 'verbose'],
  debug: ['fatal', 'error', 'warn', 'log', 'debug'],
  info: ['fatal', 'error', 'warn', 'log'],
  warn: ['fatal', 'error', 'warn'],
  error: ['fatal', 'error'],
  fatal: ['fatal'],
  silent: false,
};

/** Nest's logger levels for a LOG_LEVEL (false: no logging). */
export function nestLogLevels(level: AppConfig['LOG_LEVEL']): LogLevel[] | false {
  return LEVELS[level];
}

/** A URL fit to print: its password, if any, masked. */
export function redactUrl(raw: string): string {
  try {
    const url = new URL(raw);
    if (url.password) url.password = '***';
    return url.toString();
  } catch {
    return '<unparseable URL>';
  }
}
