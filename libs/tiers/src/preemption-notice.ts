import { Inject, Injectable } from '@nestjs/common';
import { REDIS, RedisKeys } from '@spot/redis';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import type { ModelCatalog } from './model-catalog';
import { tierKeys } from './tier-keys';

/** Who took a notice: the admin route, the CLI, or a gateway that read it from the replica's notice URL. */
export const NOTICE_SOURCES = ['admin', 'cli', 'poll'] as const;
export type NoticeSource = (typeof NOTICE_SOURCES)[number];

/**
 * How long a notice outlives its deadline in Redis. Past the deadline the replica counts as gone; a gateway
 * clears the notice once the replica has been replaced (see `PreemptionNotices` in the gateway). A notice
 * that nobody cleared (the machine was never taken and nothing said so) lapses after this.
 */
export const NOTICE_RETENTION_MS = 10 * 60_000;

/** The longest deadline a notice may give (a day; clouds give 30 s to 2 min). */
export const MAX_NOTICE_DEADLINE_S = 86_400;

const noticeSchema = z.strictObject({
  tier: z.string().min(1),
  /** The replica's base URL, as the catalog spells it. */
  endpoint: z.string().min(1),
  /** Epoch ms when the replica goes away. */
  deadlineAt: z.number().int().nonnegative(),
  /** Epoch ms when the notice was taken. */
  noticedAt: z.number().int().nonnegative(),
  source: z.enum(NOTICE_SOURCES),
  /** The process that took it (`gateway <id>`, `cli <host>`), for the operator. */
  by: z.string(),
});

/** A replica announced as going away: shared by every gateway through Redis. */
export type PreemptionNotice = z.infer<typeof noticeSchema>;

const messageSchema = z.strictObject({
  tier: z.string().min(1),
  endpoint: z.string().min(1),
  /** The notice taken, or null when it was cleared. */
  notice: noticeSchema.nullable(),
  by: z.string(),
});

/** What is published on `tierKeys.noticeChannel`. */
export type NoticeMessage = z.infer<typeof messageSchema>;

/** Parses a {@link NoticeMessage}; null when the payload is not one. */
export function parseNoticeMessage(payload: string): NoticeMessage | null {
  try {
    const parsed = messageSchema.safeParse(JSON.parse(payload));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

function parseNotice(value: string | null): PreemptionNotice | null {
  if (value === null) return null;
  try {
    const parsed = noticeSchema.safeParse(JSON.parse(value));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

/** A tier's replica: the pair a notice is about. */
export interface ReplicaRef {
  readonly tier: string;
  readonly endpoint: string;
}

/**
 * The shared record of preemption notices: one expiring Redis key per noticed replica (read by gateways that
 * start later, and every second by the others in case a message was lost) and a pub/sub message on each change,
 * so that every gateway learns a notice within a moment of any process taking it. Used by the gateway (admin
 * route, polling), the CLI and the console.
 */
@Injectable()
export class PreemptionNoticeStore {
  readonly channel: string;

  constructor(
    @Inject(REDIS) private readonly redis: Redis,
    private readonly keys: RedisKeys,
  ) {
    this.channel = keys.key(tierKeys.noticeChannel);
  }

  /** Records the notices (replacing any on the same replicas) and tells every gateway. */
  async put(notices: readonly PreemptionNotice[], now = Date.now()): Promise<void> {
    if (notices.length === 0) return;
    const multi = this.redis.multi();
    for (const n of notices) {
      const ttl = Math.max(0, n.deadlineAt - now) + NOTICE_RETENTION_MS;
      multi.set(this.keys.key(tierKeys.notice(n.tier, n.endpoint)), JSON.stringify(n), 'PX', ttl);
      const message: NoticeMessage = { tier: n.tier, endpoint: n.endpoint, notice: n, by: n.by };
      multi.publish(this.channel, JSON.stringify(message));
    }
    await exec(multi);
  }

  /** Clears the notices of these replicas (those without one are left as they are) and tells every gateway. */
  async clear(replicas: readonly ReplicaRef[], by: string): Promise<void> {
    if (replicas.length === 0) return;
    const multi = this.redis.multi();
    for (const r of replicas) {
      multi.del(this.keys.key(tierKeys.notice(r.tier, r.endpoint)));
      const message: NoticeMessage = { tier: r.tier, endpoint: r.endpoint, notice: null, by };
      multi.publish(this.channel, JSON.stringify(message));
    }
    await exec(multi);
  }

  /** The notice on each replica (null: none), in the order asked. */
  async read(replicas: readonly ReplicaRef[]): Promise<(PreemptionNotice | null)[]> {
    if (replicas.length === 0) return [];
    const values = await this.redis.mget(replicas.map((r) => this.keys.key(tierKeys.notice(r.tier, r.endpoint))));
    return values.map((v) => parseNotice(v));
  }
}

async function exec(multi: ReturnType<Redis['multi']>): Promise<void> {
  const results = await multi.exec();
  const failed = results?.find(([err]) => err !== null);
  if (results === null || failed !== undefined) {
    throw new Error(`the notice was not recorded in Redis: ${failed?.[0]?.message ?? 'transaction aborted'}`, { cause: failed?.[0] });
  }
}

/** The replicas a notice on `tier` (one `endpoint`, or every replica when omitted) is about, or what is unknown. */
export type NoticeTargets =
  | { readonly ok: true; readonly endpoints: readonly string[] }
  | { readonly ok: false; readonly unknown: 'tier' | 'endpoint'; readonly message: string };

/** Resolves a notice's target against the tiers file; `endpoint` may carry a trailing slash. */
export function noticeTargets(catalog: ModelCatalog, tier: string, endpoint?: string): NoticeTargets {
  const view = catalog.tier(tier);
  if (view === undefined) return { ok: false, unknown: 'tier', message: `No tier is named ${JSON.stringify(tier)}.` };
  if (endpoint === undefined) return { ok: true, endpoints: view.endpoints };
  const origin = endpoint.replace(/\/+$/, '');
  if (!view.endpoints.includes(origin)) {
    return { ok: false, unknown: 'endpoint', message: `Tier ${tier} has no replica ${JSON.stringify(endpoint)} (its replicas: ${view.endpoints.join(', ')}).` };
  }
  return { ok: true, endpoints: [origin] };
}

/** The notices that say each of `endpoints` of `tier` goes away `deadlineS` seconds after `now`. */
export function noticesFor(tier: string, endpoints: readonly string[], deadlineS: number, source: NoticeSource, by: string, now: number): PreemptionNotice[] {
  const deadlineAt = now + Math.round(deadlineS * 1000);
  return endpoints.map((endpoint) => ({ tier, endpoint, deadlineAt, noticedAt: now, source, by }));
}

/** What a replica's notice URL said. */
export type NoticeAnswer =
  /** The replica goes away at `deadlineAt` (epoch ms). */
  | { readonly kind: 'notice'; readonly deadlineAt: number }
  /** No notice (404, or GCP's `FALSE`). */
  | { readonly kind: 'none' }
  /** Neither (a 500, an unreadable body): changes nothing. */
  | { readonly kind: 'unknown'; readonly why: string };

const answerSchema = z.looseObject({
  /** AWS: terminate, stop or hibernate; all mean the machine goes away. */
  action: z.string().optional(),
  /** AWS: when, ISO 8601 in UTC. */
  time: z.iso.datetime({ offset: true }).optional(),
  /** Seconds from now. */
  deadline_s: z.number().nonnegative().optional(),
});

/**
 * Reads a notice URL's answer: 404 is no notice; 200 with AWS's `{"action": ..., "time": "<ISO 8601>"}`,
 * `{"deadline_s": N}`, or GCP's text `TRUE` is a notice (without a time, `defaultDeadlineS` from `now`); `FALSE`
 * is none. Anything else is unknown and changes nothing (a sidecar that failed says nothing about the machine).
 */
export function readNoticeAnswer(status: number, body: string, now: number, defaultDeadlineS: number): NoticeAnswer {
  if (status === 404) return { kind: 'none' };
  if (status !== 200) return { kind: 'unknown', why: `HTTP ${status}` };
  const text = body.trim();
  if (/^true$/i.test(text)) return { kind: 'notice', deadlineAt: now + defaultDeadlineS * 1000 };
  if (/^false$/i.test(text)) return { kind: 'none' };
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { kind: 'unknown', why: `not JSON nor TRUE/FALSE: ${JSON.stringify(text.slice(0, 80))}` };
  }
  const parsed = answerSchema.safeParse(json);
  if (!parsed.success) return { kind: 'unknown', why: `unexpected body: ${parsed.error.issues[0]?.message ?? ''}` };
  if (parsed.data.time !== undefined) return { kind: 'notice', deadlineAt: Date.parse(parsed.data.time) };
  if (parsed.data.deadline_s !== undefined) return { kind: 'notice', deadlineAt: now + Math.round(parsed.data.deadline_s * 1000) };
  return { kind: 'notice', deadlineAt: now + defaultDeadlineS * 1000 };
}
