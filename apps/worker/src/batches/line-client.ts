import { Inject, Injectable, type OnModuleDestroy } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { Agent, request } from 'undici';

/** What the gateway made of one batch line. */
export type LineOutcome =
  /** An answer to record: 2xx (billed), or an error that is the line's own (the error file). */
  | { kind: 'answer'; status: number; body: string; tier: string | null; durationMs: number }
  /** Nothing to record: the engine or the gateway was lost, the tier is waking, capacity ran out. Run it again later. */
  | { kind: 'retry'; reason: string; fatalAfter: number | null; status: number; body: string };

/** Statuses after which the same line may well succeed later (a lost spot replica, a waking tier, an overload). */
const TRANSIENT = new Set([408, 409, 429, 502, 503, 504]);

/**
 * Sends batch lines to the gateway's internal route (`/internal/batch/<endpoint>`, Authorization: Bearer
 * ADMIN_TOKEN), so that each line is routed, woken and failed over by the gateway's own code; the gateway records
 * no usage for it and names the serving tier in `x-spot-tier`.
 */
@Injectable()
export class LineClient implements OnModuleDestroy {
  private readonly base: string;
  private readonly token: string;
  private readonly agent: Agent;

  constructor(@Inject(APP_CONFIG) config: AppConfig) {
    this.base = config.GATEWAY_INTERNAL_URL.replace(/\/+$/, '');
    this.token = config.ADMIN_TOKEN ?? '';
    this.agent = new Agent({ connections: config.BATCH_CONCURRENCY * 2, headersTimeout: config.UPSTREAM_HEADERS_TIMEOUT_MS, bodyTimeout: config.UPSTREAM_HEADERS_TIMEOUT_MS });
  }

  get configured(): boolean {
    return this.token !== '';
  }

  async send(endpoint: string, keyId: string, requestId: string, body: string): Promise<LineOutcome> {
    const started = performance.now();
    let status: number;
    let text: string;
    let tier: string | null;
    let retryable: string | undefined;
    try {
      const res = await request(`${this.base}/internal/batch${endpoint}`, {
        method: 'POST',
        dispatcher: this.agent,
        headers: {
          authorization: `Bearer ${this.token}`,
          'content-type': 'application/json',
          'x-spot-batch-key': keyId,
          'x-request-id': requestId,
        },
        body,
      });
      status = res.statusCode;
      text = await res.body.text();
      const t = res.headers['x-spot-tier'];
      tier = typeof t === 'string' ? t : null;
      const r = res.headers['x-should-retry'];
      retryable = typeof r === 'string' ? r : undefined;
    } catch (err) {
      return { kind: 'retry', reason: `the gateway could not be reached (${(err as NodeJS.ErrnoException).code ?? String(err)})`, fatalAfter: null, status: 0, body: '' };
    }
    const durationMs = Math.round(performance.now() - started);
    if (status >= 200 && status < 300) return { kind: 'answer', status, body: text, tier, durationMs };
    if (retryable !== 'false' && TRANSIENT.has(status)) return { kind: 'retry', reason: `HTTP ${status}`, fatalAfter: null, status, body: text };
    // an admin token the gateway refuses is the operator's mistake, not the line's
    if (status === 401 && text.includes('invalid_admin_token')) return { kind: 'retry', reason: 'the gateway refuses ADMIN_TOKEN', fatalAfter: null, status, body: text };
    if (status >= 500 && retryable !== 'false') return { kind: 'retry', reason: `HTTP ${status}`, fatalAfter: 3, status, body: text };
    return { kind: 'answer', status, body: text, tier, durationMs };
  }

  async onModuleDestroy(): Promise<void> {
    await this.agent.close();
  }
}
