import { Global, Module } from '@nestjs/common';
import { loadConfig } from './config';

/** Injection token of the validated {@link AppConfig}. */
export const APP_CONFIG = Symbol('APP_CONFIG');

/** Provides the validated config under {@link APP_CONFIG}; validation runs once, when the module loads. */
@Global()
@Module({ providers: [{ provide: APP_CONFIG, useFactory: () => loadConfig() }], exports: [APP_CONFIG] })
export class ConfigModule {}
