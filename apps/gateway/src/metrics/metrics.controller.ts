import { Controller, Get, Header, Headers, Inject } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { ApiError } from '@spot/contract';
import { UsageRecorder } from '@spot/usage';
import { StaticBearerToken } from '../auth/static-bearer-token';
import { GatewayMetrics } from './gateway-metrics';

/**
 * `GET /metrics` in Prometheus text format; behind `Authorization: Bearer METRICS_TOKEN` when that is set, open
 * otherwise. Engines appear in it by tier and replica index, never by URL.
 */
@Controller()
export class MetricsController {
  private readonly token: StaticBearerToken | null;

  constructor(
    @Inject(APP_CONFIG) config: AppConfig,
    private readonly metrics: GatewayMetrics,
    recorder: UsageRecorder,
  ) {
    this.token = config.METRICS_TOKEN ? new StaticBearerToken(config.METRICS_TOKEN) : null;
    metrics.observeRecorder(() => recorder.stats());
  }

  @Get('metrics')
  @Header('content-type', 'text/plain; version=0.0.4; charset=utf-8')
  async metricsText(@Headers('authorization') authorization: string | undefined): Promise<string> {
    if (this.token !== null && !this.token.matches(authorization)) {
      throw new ApiError(401, 'invalid_request_error', 'A valid metrics token is required (Authorization: Bearer METRICS_TOKEN).', 'invalid_metrics_token', null, {
        'www-authenticate': 'Bearer realm="metrics"',
      });
    }
    return this.metrics.text();
  }
}
