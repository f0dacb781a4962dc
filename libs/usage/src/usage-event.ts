/**
 * One request's usage, as the gateway hands it to {@link UsageRecorder.record} after the last byte.
 * Maps 1:1 to a `usage_events` row; `(requestId, segment, createdAt)` is the idempotency key (a replay never counts
 * twice). createdAt is part of it because usage_events is partitioned by it: it must be the request's start, the
 * same in every event and journal snapshot of that request, never the time of a write or a replay.
 */
export interface UsageEvent {
  requestId: string;
  /**
   * 0, or the number of a continuation: a stream whose engine was lost mid-way and that another engine continued
   * has one event per segment (the prompt on the first, each segment's completion tokens at its own tier).
   * `(requestId, segment, createdAt)` is the idempotency key. Absent: 0.
   */
  segment?: number;
  /** When the request started (fixed for the request: part of the idempotency key and the partition key). */
  createdAt: Date;
  /** UUID of the org billed. */
  orgId: string;
  /** UUID of the API key used. */
  keyId: string;
  /** The model the tier actually served (what is priced). */
  model: string;
  tier: string;
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
  /** Seconds of audio the engine metered (speech-to-text priced by duration); absent or 0 for everything else. */
  audioSeconds?: number;
  /** Time to first token in ms (rounded when stored); null when no token was produced. */
  ttftMs: number | null;
  /** Whole request duration in ms (rounded when stored). */
  durationMs: number;
  /** HTTP status returned to the client. */
  status: number;
  /** True when the tokens were counted by the gateway because upstream sent no usage. */
  estimated: boolean;
  /** What the request costs at the serving tier's price, in nano-USD (1e-9 USD). */
  costNanos: number;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const INT4_MAX = 2_147_483_647;

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= INT4_MAX;
const isMs = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= INT4_MAX;
const isText = (v: unknown): v is string => typeof v === 'string' && v.length > 0;

/**
 * Checks an event (from the gateway or parsed back from a spool file) against the `usage_events` columns and
 * returns a fresh row of exactly the table's fields, or a reason string when Postgres would refuse it. Run off
 * the request path, so that one bad event can never poison the batch it travels in.
 */
export function toUsageRow(input: unknown): UsageEvent | string {
  if (typeof input !== 'object' || input === null) return 'not an object';
  const e = input as Record<string, unknown>;
  const createdAt = e.createdAt instanceof Date ? e.createdAt : typeof e.createdAt === 'string' ? new Date(e.createdAt) : null;
  if (!isText(e.requestId)) return 'requestId: expected a non-empty string';
  // spool files written before streams were continued have no segment: their one event is segment 0
  const segment = e.segment === undefined ? 0 : e.segment;
  if (typeof segment !== 'number' || !Number.isInteger(segment) || segment < 0 || segment > 32_767) return 'segment: expected an integer >= 0';
  if (createdAt === null || Number.isNaN(createdAt.getTime())) return 'createdAt: expected a date';
  if (typeof e.orgId !== 'string' || !UUID.test(e.orgId)) return 'orgId: expected a UUID';
  if (typeof e.keyId !== 'string' || !UUID.test(e.keyId)) return 'keyId: expected a UUID';
  if (!isText(e.model)) return 'model: expected a non-empty string';
  if (!isText(e.tier)) return 'tier: expected a non-empty string';
  if (!isCount(e.promptTokens)) return 'promptTokens: expected an integer >= 0';
  if (!isCount(e.completionTokens)) return 'completionTokens: expected an integer >= 0';
  if (!isCount(e.cachedTokens)) return 'cachedTokens: expected an integer >= 0';
  // spool files written before audio was metered have none: 0
  const audioSeconds = e.audioSeconds === undefined ? 0 : e.audioSeconds;
  if (!isCount(audioSeconds)) return 'audioSeconds: expected an integer >= 0';
  if (e.ttftMs !== null && !isMs(e.ttftMs)) return 'ttftMs: expected a duration in ms or null';
  if (!isMs(e.durationMs)) return 'durationMs: expected a duration in ms';
  if (typeof e.status !== 'number' || !Number.isInteger(e.status) || e.status < 100 || e.status > 599) {
    return 'status: expected an HTTP status';
  }
  if (typeof e.estimated !== 'boolean') return 'estimated: expected a boolean';
  // spool files written before events were priced have no cost: 0, never a lost event
  const costNanos = e.costNanos === undefined ? 0 : e.costNanos;
  if (typeof costNanos !== 'number' || !Number.isSafeInteger(costNanos) || costNanos < 0) return 'costNanos: expected an integer >= 0';
  return {
    requestId: e.requestId,
    segment,
    createdAt,
    orgId: e.orgId,
    keyId: e.keyId,
    model: e.model,
    tier: e.tier,
    promptTokens: e.promptTokens,
    completionTokens: e.completionTokens,
    cachedTokens: e.cachedTokens,
    audioSeconds,
    ttftMs: e.ttftMs === null ? null : Math.round(e.ttftMs),
    durationMs: Math.round(e.durationMs),
    status: e.status,
    estimated: e.estimated,
    costNanos,
  };
}
