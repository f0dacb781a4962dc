import { createHash } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@spot/config';

/** How many times a body may fail an engine after being sent to it before it is refused outright. */
export const POISON_STRIKES = 2;

/** Failures of several requests on one engine within this window are one incident (the engine died once). */
export const INCIDENT_WINDOW_MS = 5_000;

interface Strikes {
  /** Distinct engine incidents this body was part of. */
  count: number;
  /** Epoch ms after which these strikes are forgotten. */
  until: number;
  /** When each engine last failed holding this body. */
  readonly engines: Map<string, number>;
}

/**
 * Remembers request bodies that failed an engine after they were sent to it (a connection reset or a timeout
 * while the engine held the request: the request may have crashed it). A body gets {@link POISON_STRIKES}
 * strikes, then it is refused without touching an engine for `POISON_TTL_S`, so one poisonous request can take
 * down at most two engines however often it is sent. A strike is an engine incident: identical requests that
 * were in flight on one engine when it died (a preempted spot replica) count once, not once each. Costs
 * nothing while no body has a strike: the fingerprint (SHA-256 of the body as parsed, re-serialised) is only
 * computed then or after a failure.
 */
@Injectable()
export class PoisonGuard {
  private readonly strikes = new Map<string, Strikes>();
  private readonly ttlMs: number;

  constructor(@Inject(APP_CONFIG) config: AppConfig) {
    this.ttlMs = config.POISON_TTL_S * 1000;
  }

  /** True when some body has a strike: only then do requests need fingerprinting. */
  get active(): boolean {
    return this.strikes.size > 0;
  }

  /** The body's fingerprint: what the engine computes on, so `stream` and `stream_options` do not count. */
  fingerprint(body: Readonly<Record<string, unknown>>): string {
    const { stream: _stream, stream_options: _options, ...rest } = body;
    return createHash('sha256').update(JSON.stringify(rest)).digest('hex');
  }

  /** Whether `fingerprint` has used up its strikes (and they have not expired). */
  isPoisoned(fingerprint: string, now = Date.now()): boolean {
    const s = this.strikes.get(fingerprint);
    if (s === undefined) return false;
    if (s.until <= now) {
      this.strikes.delete(fingerprint);
      return false;
    }
    return s.count >= POISON_STRIKES;
  }

  /** Counts a failure of `engine` (its origin) while it held this body; returns the strikes the body has now. */
  strike(fingerprint: string, engine: string, now = Date.now()): number {
    this.prune(now);
    const s = this.strikes.get(fingerprint);
    if (s === undefined || s.until <= now) {
      this.strikes.set(fingerprint, { count: 1, until: now + this.ttlMs, engines: new Map([[engine, now]]) });
      return 1;
    }
    const last = s.engines.get(engine);
    s.engines.set(engine, now);
    s.until = now + this.ttlMs;
    if (last === undefined || now - last > INCIDENT_WINDOW_MS) s.count++;
    return s.count;
  }

  /** Bodies currently refused (for metrics). */
  poisonedCount(now = Date.now()): number {
    let n = 0;
    for (const s of this.strikes.values()) if (s.until > now && s.count >= POISON_STRIKES) n++;
    return n;
  }

  private prune(now: number): void {
    if (this.strikes.size < 1024) return;
    for (const [fp, s] of this.strikes) if (s.until <= now) this.strikes.delete(fp);
  }
}
