import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { BillingSyncMetrics } from '@spot/billing';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { Registry } from 'prom-client';
import { PipelineMetrics } from './pipeline-metrics';

/**
 * The worker's Prometheus endpoint: `GET /metrics` on WORKER_METRICS_PORT (none when unset), serving billing
 * sync's registry (`billing_sync_failing_orgs`, `billing_sync_org_failures_total{code}`, `billing_sync_held_events`)
 * and the pipeline's lag ({@link PipelineMetrics}: `usage_rollup_lag_seconds`, `billing_sync_lag_seconds`).
 * The worker has no HTTP app otherwise: a bare node:http server is all this needs.
 */
@Injectable()
export class WorkerMetricsServer implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger('WorkerMetrics');
  private server: Server | null = null;
  private readonly registry: Registry;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    billing: BillingSyncMetrics,
    pipeline: PipelineMetrics,
  ) {
    this.registry = Registry.merge([billing.registry, pipeline.registry]);
  }

  async onApplicationBootstrap(): Promise<void> {
    const port = this.config.WORKER_METRICS_PORT;
    if (port === undefined) return;
    const server = createServer((req, res) => {
      if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found\n');
        return;
      }
      this.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(text),
        (err: unknown) => {
          this.logger.error(`metrics failed: ${err instanceof Error ? err.message : String(err)}`);
          res.writeHead(500).end();
        },
      );
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, this.config.WORKER_METRICS_HOST, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
    this.logger.log(`metrics on http://${this.config.WORKER_METRICS_HOST}:${(server.address() as AddressInfo).port}/metrics`);
  }

  async onModuleDestroy(): Promise<void> {
    const server = this.server;
    if (server === null) return;
    this.server = null;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
