import { BeforeApplicationShutdown, Inject, Injectable, Logger } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { UsageRecorder } from '@spot/usage';
import type { FastifyInstance } from 'fastify';
import { ProxyService } from '../proxy/proxy.service';

/**
 * Graceful stop, before any connection (Postgres, Redis) is closed: stop accepting, let in-flight requests
 * and streams finish within SHUTDOWN_GRACE_MS, cut what is left (clients see an error, usage is recorded),
 * then flush the usage recorder (which spills to disk if Postgres is down).
 */
@Injectable()
export class ShutdownCoordinator implements BeforeApplicationShutdown {
  private readonly logger = new Logger('Shutdown');
  closing = false;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly adapterHost: HttpAdapterHost,
    private readonly proxy: ProxyService,
    private readonly recorder: UsageRecorder,
  ) {}

  async beforeApplicationShutdown(signal?: string): Promise<void> {
    this.closing = true;
    const fastify = this.adapterHost.httpAdapter.getInstance<FastifyInstance>();
    const server = fastify.server;
    if (server.listening) {
      server.close(); // stop accepting; live connections finish
      server.closeIdleConnections();
    }
    if (this.proxy.inflight > 0) this.logger.log(`${signal ?? 'stop'}: waiting for ${this.proxy.inflight} request(s)`);
    const left = await this.proxy.drain(this.config.SHUTDOWN_GRACE_MS);
    if (left > 0) {
      this.logger.warn(`cutting ${left} request(s) still running after ${this.config.SHUTDOWN_GRACE_MS} ms`);
      this.proxy.cutAll('gateway shutting down');
      await this.proxy.drain(1_000);
    }
    server.closeAllConnections();
    await this.recorder.stop();
  }
}
