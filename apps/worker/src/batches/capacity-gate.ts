import { Inject, Injectable, Logger, type OnModuleDestroy } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { ModelCatalog } from '@spot/tiers';
import { request } from 'undici';

const WAITING = /^vllm:num_requests_waiting(?:\{[^}]*\})?\s+([0-9.eE+-]+)/gm;

/** The sum of `vllm:num_requests_waiting` over a Prometheus text page, or null when it has none. */
export function waitingOf(metrics: string): number | null {
  let total: number | null = null;
  for (const m of metrics.matchAll(WAITING)) total = (total ?? 0) + Number(m[1]);
  return total;
}

/**
 * Batch work runs in the capacity interactive traffic leaves: the batch tiers' engines are read every
 * BATCH_METRICS_EVERY_MS, and a new line starts only while some engine has fewer than BATCH_MAX_WAITING requests
 * waiting (an engine that does not answer counts as free: the gateway decides, wakes or fails over). When
 * interactive load rises, engines queue, and batch lines stop starting until the queues drain.
 */
@Injectable()
export class CapacityGate implements OnModuleDestroy {
  private readonly logger = new Logger('BatchCapacity');
  private readonly endpoints: string[];
  private readonly waiting = new Map<string, number | null>();
  private readonly bound: number;
  private readonly everyMs: number;
  private timer: NodeJS.Timeout | null = null;
  private waiters: Array<() => void> = [];
  private polling = false;
  /** Times a line waited for capacity (for the bench). */
  held = 0;

  constructor(@Inject(APP_CONFIG) config: AppConfig, @Inject(ModelCatalog) catalog: ModelCatalog) {
    this.endpoints = [...new Set(catalog.tiers().filter((t) => t.batch).flatMap((t) => t.endpoints))];
    this.bound = config.BATCH_MAX_WAITING;
    this.everyMs = config.BATCH_METRICS_EVERY_MS;
  }

  /** Whether a new line may start now. */
  get open(): boolean {
    if (this.waiting.size === 0) return true;
    for (const e of this.endpoints) {
      const w = this.waiting.get(e);
      if (w === undefined || w === null || w < this.bound) return true;
    }
    return false;
  }

  /** Resolves true when a new line may start, or false after `maxWaitMs` without capacity (the caller checks its batch). */
  async admit(maxWaitMs = 1_000): Promise<boolean> {
    this.start();
    if (this.open) return true;
    this.held++;
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== wake);
        resolve(false);
      }, maxWaitMs);
      const wake = () => {
        clearTimeout(timer);
        resolve(true);
      };
      this.waiters.push(wake);
    });
  }

  private start(): void {
    if (this.timer !== null || this.endpoints.length === 0) return;
    this.timer = setInterval(() => void this.poll(), this.everyMs);
    this.timer.unref();
    void this.poll();
  }

  private async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      await Promise.all(
        this.endpoints.map(async (e) => {
          try {
            const res = await request(`${e}/metrics`, { headersTimeout: 1_000, bodyTimeout: 1_000 });
            const text = await res.body.text();
            this.waiting.set(e, res.statusCode === 200 ? waitingOf(text) : null);
          } catch {
            this.waiting.set(e, null);
          }
        }),
      );
    } catch (err) {
      this.logger.warn(`reading engine metrics failed: ${String(err)}`);
    } finally {
      this.polling = false;
    }
    if (this.open && this.waiters.length > 0) {
      const waiters = this.waiters;
      this.waiters = [];
      for (const w of waiters) w();
    }
  }

  onModuleDestroy(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    for (const w of this.waiters) w();
    this.waiters = [];
  }
}
