import { Inject, Injectable, OnApplicationShutdown } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { ModelCatalog, type ModelRoute } from '@spot/tiers';
import { Pool } from 'undici';

/** Circuit state of an endpoint: closed (in use), open (ejected), half-open (one probe request allowed). */
export type BreakerState = 'closed' | 'open' | 'half-open';

/** Why an attempt failed: a vanished engine (refused, reset: spot preemption) is ejected at once. */
export type FailureKind = 'connect' | 'status';

/**
 * One engine replica: its keep-alive connection pool, the requests we have in flight to it, what its own
 * /metrics says is queued there, and its circuit breaker.
 */
export class Endpoint {
  inflight = 0;
  /** `vllm:num_requests_waiting` at the last scrape (0 when not scraped). */
  waiting = 0;
  state: BreakerState = 'closed';
  failures = 0;
  openedAt = 0;
  /** A half-open endpoint lets one request through at a time. */
  probing = false;
  ejections = 0;
  lastError: string | null = null;
  /** Attempts sent here, ever: the tier's idle tracking compares it between reports (no clock read per request). */
  uses = 0;
  /**
   * Epoch ms when the replica goes away (a preemption notice, see `PreemptionNotices`), 0 when none. A noticed
   * replica takes no new request while any other replica of the model can; in-flight ones continue.
   */
  noticeDeadline = 0;

  constructor(
    readonly origin: string,
    readonly tier: string,
    /** Its index among its tier's endpoints in the tiers file: what metrics name it by (never by URL). */
    readonly replica: string,
    readonly pool: Pool,
    private readonly breaker: { failures: number; cooldownMs: number },
  ) {}

  /**
   * Whether a request may be sent now (an open circuit past its cooldown turns half-open for one probe). Never
   * under a preemption notice.
   */
  available(now: number): boolean {
    if (this.noticeDeadline !== 0) return false;
    if (this.state === 'closed') return true;
    if (this.state === 'open') {
      if (now - this.openedAt < this.breaker.cooldownMs) return false;
      this.state = 'half-open';
      this.probing = false;
    }
    return !this.probing;
  }

  /** Whether {@link available} would let a request through now, without changing state. */
  usable(now: number): boolean {
    if (this.noticeDeadline !== 0) return false;
    if (this.state === 'closed') return true;
    if (this.state === 'open') return now - this.openedAt >= this.breaker.cooldownMs;
    return !this.probing;
  }

  /** Called when a request is sent to this endpoint. */
  taken(): void {
    this.inflight++;
    this.uses++;
    if (this.state === 'half-open') this.probing = true;
  }

  /** Called when an attempt on this endpoint ends, whatever the outcome. */
  released(): void {
    this.inflight--;
    // a probe that ended without a verdict (client gone) lets the next request probe
    if (this.state === 'half-open') this.probing = false;
  }

  succeeded(): void {
    this.failures = 0;
    this.probing = false;
    this.state = 'closed';
    this.lastError = null;
  }

  /** Returns true when this failure ejected the endpoint (its circuit opened). */
  failed(kind: FailureKind, message: string, now: number): boolean {
    this.failures++;
    this.probing = false;
    this.lastError = message;
    if (this.state === 'open') return false;
    if (kind === 'connect' || this.state === 'half-open' || this.failures >= this.breaker.failures) {
      this.state = 'open';
      this.openedAt = now;
      this.ejections++;
      return true;
    }
    return false;
  }

  /** The load a new request would join: ours in flight plus what the engine says is queued. */
  get load(): number {
    return this.inflight + this.waiting;
  }
}

/** A place to send one attempt: the route (tier, engine model name, price) and a replica of that tier. */
export interface Candidate {
  readonly route: ModelRoute;
  readonly endpoint: Endpoint;
}

/**
 * Keep-alive undici pools, one per engine replica, and the choice of replica: tiers in the catalog's order of
 * preference, within a tier the replicas with the least load (in flight here, plus queued on the engine when
 * scraped). Replicas under a preemption notice and ejected ones (open circuit) are skipped, and only tried when
 * nothing else is left: first the noticed ones still before their deadline (they serve until then), then the
 * ejected ones, last those past their deadline (gone; the list is never empty, so the failure that follows is
 * answered like any other).
 */
@Injectable()
export class UpstreamPool implements OnApplicationShutdown {
  private readonly endpoints = new Map<string, Endpoint>();
  private readonly breaker: { failures: number; cooldownMs: number };
  /** `tier\0origin` → the origin's index in that tier's endpoints. */
  private readonly replicas = new Map<string, string>();

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @Inject(ModelCatalog) catalog: ModelCatalog,
  ) {
    this.breaker = { failures: config.BREAKER_FAILURES, cooldownMs: config.BREAKER_COOLDOWN_MS };
    for (const t of catalog.tiers()) t.endpoints.forEach((origin, i) => this.replicas.set(`${t.name}\u0000${origin}`, String(i)));
  }

  endpoint(origin: string, tier = ''): Endpoint {
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
      e = new Endpoint(origin, tier, this.replicas.get(`${tier}\u0000${origin}`) ?? 'unlisted', pool, this.breaker);
      this.endpoints.set(origin, e);
    }
    return e;
  }

  /** Every endpoint created so far. */
  all(): Endpoint[] {
    return [...this.endpoints.values()];
  }

  /** Attempt order for a request: each route in turn, its available replicas by least load; ejected ones last. */
  candidates(routes: readonly ModelRoute[]): Candidate[] {
    const now = Date.now();
    // the common case, one route with one healthy replica: no sorting, no second array
    if (routes.length === 1 && routes[0].endpoints.length === 1) {
      const route = routes[0];
      const endpoint = this.endpoint(route.endpoints[0], route.tier);
      endpoint.available(now);
      return [{ route, endpoint }];
    }
    const out: Candidate[] = [];
    let ejected: Candidate[] | null = null;
    let noticed: Candidate[] | null = null;
    for (const route of routes) {
      const eps = route.endpoints.map((o) => this.endpoint(o, route.tier));
      if (eps.length > 1) eps.sort((a, b) => a.load - b.load);
      for (const endpoint of eps) {
        if (endpoint.available(now)) out.push({ route, endpoint });
        else if (endpoint.noticeDeadline !== 0) (noticed ??= []).push({ route, endpoint });
        else (ejected ??= []).push({ route, endpoint });
      }
    }
    let gone: Candidate[] | null = null;
    if (noticed !== null) {
      // the latest deadline first; past their deadline, after everything else
      noticed.sort((a, b) => b.endpoint.noticeDeadline - a.endpoint.noticeDeadline);
      for (const c of noticed) {
        if (c.endpoint.noticeDeadline > now) out.push(c);
        else (gone ??= []).push(c);
      }
    }
    if (ejected !== null) {
      ejected.sort((a, b) => a.endpoint.openedAt - b.endpoint.openedAt);
      out.push(...ejected);
    }
    if (gone !== null) out.push(...gone);
    return out;
  }

  async onApplicationShutdown(): Promise<void> {
    await Promise.all([...this.endpoints.values()].map((e) => e.pool.close().catch(() => undefined)));
  }
}
