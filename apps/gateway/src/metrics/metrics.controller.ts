import { Controller, Get, Header } from '@nestjs/common';
import { UsageRecorder } from '@spot/usage';
import { GatewayMetrics } from './gateway-metrics';

/** `GET /metrics` in Prometheus text format. */
@Controller()
export class MetricsController {
  constructor(
    private readonly metrics: GatewayMetrics,
    private readonly recorder: UsageRecorder,
  ) {}

  @Get('metrics')
  @Header('content-type', 'text/plain; version=0.0.4; charset=utf-8')
  async metricsText(): Promise<string> {
    this.metrics.observeRecorder(this.recorder.stats());
    return this.metrics.registry.metrics();
  }
}
