import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { ModelCatalog } from '@spot/tiers';
import { GatewayMetrics } from '../metrics/gateway-metrics';
import { PreemptionNotices } from './preemption-notices';
import { TierWaker } from './tier-waker';
import { type Endpoint, UpstreamPool } from './upstream-pool';

const CHECK_TIMEOUT_MS = 2_000;
const WAITING = /^vllm:num_requests_waiting(?:\{[^}]*\})?\s+([0-9.eE+-]+)/gm;

/**
 * Active health checks, off the request path: every HEALTH_CHECK_INTERVAL_MS each engine endpoint's /health
 * is asked (a failure ejects it; an answer brings an ejected one back without waiting for a live probe), and
 * its /metrics is read for `vllm:num_requests_waiting`, which refines least-load replica choice.
 */
@Injectable()
export class HealthChecker implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger('HealthChecker');
  private timer: NodeJS.Timeout | null = null;
  private running = false;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @Inject(ModelCatalog) private readonly catalog: ModelCatalog,
    private readonly pool: UpstreamPool,
    private readonly metrics: GatewayMetrics,
    private readonly waker: TierWaker,
    private readonly notices: PreemptionNotices,
  ) {}

  onApplicationBootstrap(): void {
    for (const tier of this.catalog.tiers()) for (const origin of tier.endpoints) this.pool.endpoint(origin, tier.name);
    this.timer = setInterval(() => void this.checkAll(), this.config.HEALTH_CHECK_INTERVAL_MS);
    this.timer.unref();
  }

  onApplicationShutdown(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** One round over every endpoint (skipped while the previous round still runs). */
  async checkAll(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      await Promise.all(this.pool.all().map((e) => this.check(e)));
    } finally {
      this.running = false;
    }
  }

  private async check(e: Endpoint): Promise<void> {
    // a sleeping tier's engines may be down on purpose (scaled to 0); its wake checks them again
    const sleepy = this.waker.stateOf(e.tier);
    if (sleepy !== undefined && sleepy.state !== 'awake') return;
    let healthy = false;
    let reason = '';
    try {
      const res = await e.pool.request({ method: 'GET', path: '/health', headersTimeout: CHECK_TIMEOUT_MS, bodyTimeout: CHECK_TIMEOUT_MS });
      await res.body.dump();
      healthy = res.statusCode === 200;
      reason = `health check: HTTP ${res.statusCode}`;
    } catch (err) {
      reason = `health check: ${(err as NodeJS.ErrnoException).code ?? String(err)}`;
    }
    // past a notice's deadline, down then up again is the replacement machine
    this.notices.healthChecked(e, healthy);
    if (!healthy) {
      // a tier that may sleep and stops answering may have been put to sleep behind our back: probe it
      this.waker.refused(e.tier);
      if (e.failed('connect', reason, Date.now())) {
        this.metrics.ejections.labels(e.tier, e.replica).inc();
        this.logger.warn(`engine ${e.origin} (tier ${e.tier}) ejected: ${reason}`);
      }
      return;
    }
    if (e.state !== 'closed') {
      this.logger.log(`engine ${e.origin} (tier ${e.tier}) is healthy again`);
      e.succeeded();
    }
    try {
      const res = await e.pool.request({ method: 'GET', path: '/metrics', headersTimeout: CHECK_TIMEOUT_MS, bodyTimeout: CHECK_TIMEOUT_MS });
      if (res.statusCode !== 200) {
        await res.body.dump();
        return;
      }
      const text = await res.body.text();
      let waiting = 0;
      for (const m of text.matchAll(WAITING)) waiting += Number(m[1]) || 0;
      e.waiting = waiting;
    } catch {
      // metrics are a refinement; the health check above decides availability
      e.waiting = 0;
    }
  }
}
