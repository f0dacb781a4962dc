import { createHash } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@spot/config';

/**
 * Request bodies that are refused without touching an engine: bodies of which one request lost two engines in a
 * row after sending them (a connection lost or a timeout while the engine held the request: it may be what
 * killed them). A body is refused for `POISON_TTL_S`, so one poisonous request takes down at most two engines
 * however often it is sent. Costs nothing while no body is refused: the fingerprint (SHA-256 of the body as
 * parsed, re-serialised) is only computed then, or after a second failure.
 */
@Injectable()
export class PoisonGuard {
  /** Fingerprint -> epoch ms until which it is refused. */
  private readonly refused = new Map<string, number>();
  private readonly ttlMs: number;

  constructor(@Inject(APP_CONFIG) config: AppConfig) {
    this.ttlMs = config.POISON_TTL_S * 1000;
  }

  /** True when some body is refused: only then do requests need fingerprinting. */
  get active(): boolean {
    return this.refused.size > 0;
  }

  /** The body's fingerprint: what the engine computes on, so `stream` and `stream_options` do not count. */
  fingerprint(body: Readonly<Record<string, unknown>>): string {
    const { stream: _stream, stream_options: _options, ...rest } = body;
    return createHash('sha256').update(JSON.stringify(rest)).digest('hex');
  }

  /** Whether `fingerprint` is refused now. */
  isPoisoned(fingerprint: string, now = Date.now()): boolean {
    const until = this.refused.get(fingerprint);
    if (until === undefined) return false;
    if (until > now) return true;
    this.refused.delete(fingerprint);
    return false;
  }

  /** Refuses `fingerprint` for POISON_TTL_S from now. */
  poison(fingerprint: string, now = Date.now()): void {
    if (this.refused.size >= 1024) for (const [fp, until] of this.refused) if (until <= now) this.refused.delete(fp);
    this.refused.set(fingerprint, now + this.ttlMs);
  }

  /** Bodies refused now (for metrics). */
  poisonedCount(now = Date.now()): number {
    let n = 0;
    for (const until of this.refused.values()) if (until > now) n++;
    return n;
  }
}
