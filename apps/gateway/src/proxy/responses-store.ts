import { Inject, Injectable, Logger } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { ApiError } from '@spot/contract';
import { type ResponseTurn, ResponsesRepository, type StoredResponseRow } from '@spot/db';
import { GatewayMetrics } from '../metrics/gateway-metrics';

const DAY_MS = 86_400_000;
/** A miss on previous_response_id is looked up once more after this long: another gateway's write may be in flight. */
const MISS_RECHECK_MS = 150;

/** 404 in OpenAI's envelope for a Response id this org does not have (unknown, another org's, expired, deleted). */
export function responseNotFound(id: string): ApiError {
  return new ApiError(404, 'invalid_request_error', `No response found with id '${id}'.`, null, 'response_id');
}

/** 404 for a previous_response_id this org does not have (before any engine is asked). */
export function previousResponseNotFound(id: string): ApiError {
  return new ApiError(404, 'invalid_request_error', `Previous response with id '${id}' not found.`, 'previous_response_not_found', 'previous_response_id');
}

/** A Response to keep, as the exchange hands it over once the client has it. */
export interface ResponseToKeep {
  orgId: string;
  keyId: string;
  model: string;
  previousResponseId: string | null;
  input: unknown[];
  response: Record<string, unknown>;
  requestId: string;
}

/**
 * The Responses the gateway keeps (never the engine: any replica of any tier can serve the next turn). Writes
 * leave after the client's last byte and never hold it up; a failed write is logged and counted
 * (`gateway_responses_stored_total{outcome="failed"}`), and that Response is then unknown (a later
 * previous_response_id to it is a 404). A lookup of an id whose write this process still has in flight waits
 * for it, so a client's next turn cannot outrun its own previous one here.
 */
@Injectable()
export class ResponsesStore {
  private readonly logger = new Logger('Responses');
  private readonly pending = new Map<string, Promise<void>>();
  private readonly retentionMs: number;

  constructor(
    private readonly repo: ResponsesRepository,
    private readonly metrics: GatewayMetrics,
    @Inject(APP_CONFIG) config: AppConfig,
  ) {
    this.retentionMs = config.RESPONSES_RETENTION_DAYS * DAY_MS;
  }

  /** Stores a Response off the request path (the promise is tracked, never awaited by the exchange). */
  keep(r: ResponseToKeep): void {
    const id = r.response.id;
    if (typeof id !== 'string' || id === '') {
      this.notKept('failed', r.requestId, 'the engine response has no id');
      return;
    }
    const now = Date.now();
    const write = this.repo
      .insert({ id, orgId: r.orgId, keyId: r.keyId, model: r.model, createdAt: new Date(now), expiresAt: new Date(now + this.retentionMs), previousResponseId: r.previousResponseId, input: r.input, response: r.response, requestId: r.requestId })
      .then(
        () => {
          this.metrics.responsesStored.labels('stored').inc();
        },
        (err: unknown) => this.notKept('failed', r.requestId, err instanceof Error ? err.message : String(err)),
      )
      .finally(() => this.pending.delete(id));
    this.pending.set(id, write);
  }

  /** Counts and logs a Response that is not kept. */
  notKept(outcome: 'failed' | 'too_large', requestId: string, why: string): void {
    this.metrics.responsesStored.labels(outcome).inc();
    this.logger.warn(`request ${requestId}: its response is not stored (${why}); a previous_response_id to it will be 404`);
  }

  /** The turns that end at `id`, oldest first. @throws the 404 of a previous_response_id this org does not have. */
  async chain(orgId: string, id: string): Promise<ResponseTurn[]> {
    await this.pending.get(id);
    let turns = await this.repo.chain(orgId, id, new Date());
    if (turns === null) {
      await new Promise((r) => setTimeout(r, MISS_RECHECK_MS));
      turns = await this.repo.chain(orgId, id, new Date());
    }
    if (turns === null) throw previousResponseNotFound(id);
    return turns;
  }

  /** An org's Response. @throws the 404 for any id it does not have. */
  async find(orgId: string, id: string): Promise<StoredResponseRow> {
    await this.pending.get(id);
    const row = await this.repo.find(orgId, id, new Date());
    if (row === null) throw responseNotFound(id);
    return row;
  }

  /** Deletes an org's Response. @throws the 404 for any id it does not have. */
  async delete(orgId: string, id: string): Promise<void> {
    await this.pending.get(id);
    if (!(await this.repo.delete(orgId, id, new Date()))) throw responseNotFound(id);
  }
}
