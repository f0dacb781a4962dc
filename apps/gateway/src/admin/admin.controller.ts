import { createHash, timingSafeEqual } from 'node:crypto';
import { Controller, Get, Header, Headers, Inject } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { ApiError } from '@spot/contract';
import { ModelCatalog } from '@spot/tiers';
import { UpstreamPool } from '../routing/upstream-pool';

const digest = (s: string) => createHash('sha256').update(s).digest();

/**
 * Operator views of the gateway, behind `Authorization: Bearer ADMIN_TOKEN`. Without ADMIN_TOKEN they do
 * not exist (404), so nothing is exposed by default.
 */
@Controller('admin')
export class AdminController {
  private readonly token: Buffer | null;

  constructor(
    @Inject(APP_CONFIG) config: AppConfig,
    @Inject(ModelCatalog) private readonly catalog: ModelCatalog,
    private readonly pool: UpstreamPool,
  ) {
    this.token = config.ADMIN_TOKEN ? digest(config.ADMIN_TOKEN) : null;
  }

  /** Every tier with its endpoints as this gateway sees them: circuit state, load, failures, ejections. */
  @Get('tiers')
  @Header('cache-control', 'no-store')
  tiers(@Headers('authorization') authorization: string | undefined) {
    this.authorize(authorization);
    const now = Date.now();
    return {
      tiers: this.catalog.tiers().map((t) => {
        const endpoints = t.endpoints.map((origin) => {
          const e = this.pool.endpoint(origin, t.name);
          e.available(now);
          return {
            url: origin,
            state: e.state,
            inflight: e.inflight,
            waiting: e.waiting,
            consecutiveFailures: e.failures,
            ejections: e.ejections,
            openedAt: e.openedAt > 0 ? new Date(e.openedAt).toISOString() : null,
            lastError: e.lastError,
          };
        });
        const healthy = endpoints.some((e) => e.state !== 'open');
        return { name: t.name, kind: t.kind, models: t.models, state: healthy ? 'awake' : 'unhealthy', endpoints };
      }),
    };
  }

  private authorize(authorization: string | undefined): void {
    if (this.token === null) throw new ApiError(404, 'invalid_request_error', 'Not found.', 'not_found');
    const given = /^Bearer (.+)$/i.exec(authorization ?? '')?.[1] ?? '';
    if (!timingSafeEqual(digest(given), this.token)) {
      throw new ApiError(401, 'invalid_request_error', 'A valid admin token is required (Authorization: Bearer ADMIN_TOKEN).', 'invalid_admin_token');
    }
  }
}
