import { type DynamicModule, Module } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { type AppConfig, ConfigModule } from '@spot/config';
import { DbModule } from '@spot/db';
import { RedisModule } from '@spot/redis';
import { TelemetryModule } from '@spot/telemetry';
import { PreemptionNoticeStore } from '@spot/tiers';
import { UsageModule } from '@spot/usage';
import { AdminController } from './admin/admin.controller';
import { ApiKeyAuthService } from './auth/api-key-auth.service';
import { BatchesRoutes } from './batches/batches.routes';
import { BatchesService } from './batches/batches.service';
import { FilesRoutes } from './files/files.routes';
import { FilesService } from './files/files.service';
import { KeyRevocationSubscriber } from './auth/key-revocation.subscriber';
import { OpenAIExceptionFilter } from './errors/openai-exception.filter';
import { HealthController } from './health/health.controller';
import { RedisHealth } from './health/redis-health';
import { BodyBudget } from './http/body-budget';
import { ShutdownCoordinator } from './lifecycle/shutdown-coordinator';
import { RateLimiter } from './limits/rate-limiter';
import { GatewayMetrics } from './metrics/gateway-metrics';
import { MetricsController } from './metrics/metrics.controller';
import { clientLimits, FastPath } from './proxy/fast-path';
import { ModelsService } from './proxy/models.service';
import { ProxyService } from './proxy/proxy.service';
import { ProtocolAdapters } from './proxy/adapters';
import { ResponsesAdapter } from './proxy/responses-adapter';
import { ResponsesRoutes } from './proxy/responses-routes';
import { ResponsesStore } from './proxy/responses-store';
import { V1Routes } from './proxy/v1-routes';
import { AudioUploads } from './proxy/audio-routes';
import { modelCatalogProvider } from './routing/model-catalog.provider';
import { HealthChecker } from './routing/health-checker';
import { PoisonGuard } from './routing/poison-guard';
import { PreemptionNotices } from './routing/preemption-notices';
import { TierWaker } from './routing/tier-waker';
import { UpstreamPool } from './routing/upstream-pool';

/** The data plane: OpenAI's contract in front of the engine tiers. */
@Module({})
export class GatewayModule {
  static forRoot(config: AppConfig, fastPath: FastPath = new FastPath(clientLimits(config))): DynamicModule {
    return {
      module: GatewayModule,
      imports: [ConfigModule.forRoot(config), DbModule, RedisModule.withCommandDeadline(), UsageModule, TelemetryModule.forRoot('spotinference-gateway')],
      controllers: [HealthController, MetricsController, AdminController],
      providers: [
        GatewayMetrics,
        RedisHealth,
        ApiKeyAuthService,
        KeyRevocationSubscriber,
        RateLimiter,
        modelCatalogProvider,
        UpstreamPool,
        HealthChecker,
        TierWaker,
        PreemptionNoticeStore,
        PreemptionNotices,
        PoisonGuard,
        ProxyService,
        ModelsService,
        OpenAIExceptionFilter,
        { provide: APP_FILTER, useExisting: OpenAIExceptionFilter },
        ShutdownCoordinator,
        V1Routes,
        AudioUploads,
        ResponsesStore,
        ResponsesAdapter,
        ProtocolAdapters,
        ResponsesRoutes,
        BodyBudget,
        FilesService,
        FilesRoutes,
        BatchesService,
        BatchesRoutes,
        { provide: FastPath, useValue: fastPath },
      ],
    };
  }
}
