import { Inject, Injectable, OnApplicationShutdown } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import type { ModelRoute } from '@spot/tiers';
import { Pool } from 'undici';

/** One engine replica: its keep-alive connection pool and the requests we have in flight to it. */
export class Endpoint {
  inflight = 0;

  constructor(
    readonly origin: string,
    readonly pool: Pool,
  ) {}
}

/** A place to send one attempt: the route (tier, engine model name, price) and a replica of that tier. */
export interface Candidate {
  readonly route: ModelRoute;
  readonly endpoint: Endpoint;
}

/**
 * Keep-alive undici pools, one per engine replica, and the choice of replica: least outstanding requests
 * within a tier, tiers in the catalog's order of preference.
 */
@Injectable()
export class UpstreamPool implements OnApplicationShutdown {
  private readonly endpoints = new Map<string, Endpoint>();

  constructor(@Inject(APP_CONFIG) private readonly config: AppConfig) {}

  endpoint(origin: string): Endpoint {
    let e = this.endpoints.get(origin);
    if (e === undefined) {
      const pool = new Pool(origin, {
        connections: this.config.UPSTREAM_CONNECTIONS,
        pipelining: 1,
        keepAliveTimeout: 30_000,
        connectTimeout: this.config.UPSTREAM_CONNECT_TIMEOUT_MS,
        headersTimeout: this.config.UPSTREAM_HEADERS_TIMEOUT_MS,
        // a stream may pause between tokens for long (a queue on the engine); the client can abort
        bodyTimeout: this.config.UPSTREAM_HEADERS_TIMEOUT_MS,
      });
      e = new Endpoint(origin, pool);
      this.endpoints.set(origin, e);
    }
    return e;
  }

  /** Attempt order for a request: each route in turn, its replicas by fewest requests in flight. */
  candidates(routes: readonly ModelRoute[]): Candidate[] {
    const out: Candidate[] = [];
    for (const route of routes) {
      const eps = route.endpoints;
      if (eps.length === 1) {
        out.push({ route, endpoint: this.endpoint(eps[0]) });
        continue;
      }
      const sorted = eps.map((o) => this.endpoint(o)).sort((a, b) => a.inflight - b.inflight);
      for (const endpoint of sorted) out.push({ route, endpoint });
    }
    return out;
  }

  async onApplicationShutdown(): Promise<void> {
    await Promise.all([...this.endpoints.values()].map((e) => e.pool.close().catch(() => undefined)));
  }
}
