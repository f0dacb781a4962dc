import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { Gauge } from 'prom-client';
import { GatewayMetrics } from '../metrics/gateway-metrics';

/**
 * The bytes of request bodies this process may hold at once (GATEWAY_MAX_BODY_BYTES_IN_FLIGHT), over every
 * request being received: a request reserves its declared content-length before a byte is read (a chunked
 * one, its bytes as they come) and releases them once its body is parsed or dropped. A reservation that
 * does not fit is refused: the caller answers 503, so a flood of bodies costs retries, never the process.
 */
@Injectable()
export class BodyBudget {
  private readonly max: number;
  private heldBytes = 0;

  constructor(@Inject(APP_CONFIG) config: AppConfig, metrics: GatewayMetrics) {
    this.max = config.GATEWAY_MAX_BODY_BYTES_IN_FLIGHT;
    const budget = this;
    new Gauge({
      name: 'gateway_body_bytes_in_flight',
      help: 'Bytes of request bodies held in memory now (reserved, being received or parsed)',
      registers: [metrics.registry],
      collect() {
        this.set(budget.heldBytes);
      },
    });
  }

  /** Reserves `bytes`; false (nothing reserved) when that would pass the budget. */
  reserve(bytes: number): boolean {
    if (this.heldBytes + bytes > this.max) return false;
    this.heldBytes += bytes;
    return true;
  }

  release(bytes: number): void {
    this.heldBytes -= bytes;
  }

  /** Bytes reserved now. */
  get held(): number {
    return this.heldBytes;
  }
}
