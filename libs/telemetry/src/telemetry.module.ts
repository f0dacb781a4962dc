import { type DynamicModule, Global, Injectable, Module, type OnApplicationShutdown } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { startTracing, type Tracing } from './tracing';
import { tracingOptions } from './tracing-options';

/**
 * This process's tracing: {@link tracing} is null when it is off (no OTLP endpoint configured), and then no
 * OpenTelemetry module was loaded. Flushes what is queued when the app shuts down (after its requests drained).
 */
@Injectable()
export class Telemetry implements OnApplicationShutdown {
  constructor(readonly tracing: Tracing | null) {}

  async onApplicationShutdown(): Promise<void> {
    await this.tracing?.shutdown();
  }
}

/** Provides {@link Telemetry}, started from the config's OTEL_* variables as `serviceName` (the default name). */
@Global()
@Module({})
export class TelemetryModule {
  static forRoot(serviceName: string): DynamicModule {
    return {
      module: TelemetryModule,
      providers: [
        {
          provide: Telemetry,
          inject: [APP_CONFIG],
          useFactory: async (config: AppConfig) => {
            const options = tracingOptions(config, serviceName);
            return new Telemetry(options === null ? null : await startTracing(options));
          },
        },
      ],
      exports: [Telemetry],
    };
  }
}
