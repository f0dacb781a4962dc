import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChainableCommander, Redis } from 'ioredis';

/** The verdicts of admit.lua. */
export const enum AdmitVerdict {
  Admitted = 0,
  NoRequests = 1,
  NoTokens = 2,
  NoLedger = 3,
  OverBudget = 4,
}

/**
 * admit.lua's reply: the verdict; for {@link AdmitVerdict.Admitted} the requests and tokens leased, for
 * {@link AdmitVerdict.OverBudget} the ledger total; then the ledger total (after this reservation when
 * admitted) and the live gateways (budgeted requests only; 0 otherwise).
 */
export type AdmitReply = [verdict: AdmitVerdict, a: number, b: number, used: number, gateways: number];

/** admit.lua's KEYS and ARGV, by name (see the script's header). */
export interface AdmitArgs {
  /** KEYS[1] the key's rate window for this minute. */
  rlKey: string;
  /** KEYS[2] the org's month ledger. */
  ledgerKey: string;
  /** KEYS[3] the gateway registry. */
  registryKey: string;
  /** 1: lease from the rate window; 0: no limits to check. */
  lease: 0 | 1;
  /** Requests and tokens to lease (at most). */
  requests: number;
  tokens: number;
  /** Tokens this request needs (the lease must cover them). */
  need: number;
  /** Limits per minute (0 = none). */
  rpm: number;
  tpm: number;
  /** The org's budget in nano-USD, or -1 for none. */
  budgetNanos: number;
  /** This request's worst case, nano-USD. */
  worstNanos: number;
  gateway: string;
  nowMs: number;
  ledgerTtlMs: number;
}

interface LedgerRedis {
  spotAdmit(
    rlKey: string,
    ledgerKey: string,
    registryKey: string,
    lease: 0 | 1,
    requests: number,
    tokens: number,
    need: number,
    rpm: number,
    tpm: number,
    budgetNanos: number,
    worstNanos: number,
    gateway: string,
    nowMs: number,
    ledgerTtlMs: number,
  ): Promise<AdmitReply>;
  spotSettle(ledgerKey: string, gateway: string, seq: number, spentNanos: number, heldNanos: number, nowMs: number, ledgerTtlMs: number): Promise<0 | 1>;
  spotSeed(ledgerKey: string, spentNanos: number, ledgerTtlMs: number): Promise<number>;
  spotRegister(registryKey: string, gateway: string, nowMs: number): Promise<number>;
}

const SCRIPTS = [
  ['spotAdmit', 'admit', 3],
  ['spotSettle', 'settle', 1],
  ['spotSeed', 'seed', 1],
  ['spotRegister', 'register', 1],
] as const;

/**
 * Typed calls of the budget ledger's Lua scripts (`commands/*.lua`, each with a header naming its KEYS and
 * ARGV), defined once on the client (EVALSHA, falling back to EVAL on a Redis that lost its script cache).
 */
export class LedgerCommands {
  private readonly redis: Redis & LedgerRedis;

  constructor(redis: Redis) {
    if (!('spotAdmit' in redis)) {
      for (const [name, file, numberOfKeys] of SCRIPTS) {
        redis.defineCommand(name, { numberOfKeys, lua: readFileSync(join(__dirname, 'commands', `${file}.lua`), 'utf8') });
      }
    }
    this.redis = redis as Redis & LedgerRedis;
  }

  /** admit.lua: the key's limits and the org's budget, in one round trip. */
  admit(a: AdmitArgs): Promise<AdmitReply> {
    return this.redis.spotAdmit(a.rlKey, a.ledgerKey, a.registryKey, a.lease, a.requests, a.tokens, a.need, a.rpm, a.tpm, a.budgetNanos, a.worstNanos, a.gateway, a.nowMs, a.ledgerTtlMs);
  }

  /** A pipeline of {@link settleIn} calls (sent with `exec`). */
  pipeline(): ChainableCommander {
    return this.redis.pipeline();
  }

  /** settle.lua, queued on `pipeline`: a batch of spend (applied once per `seq`) and the gateway's reservations now. */
  settleIn(pipeline: ChainableCommander, ledgerKey: string, gateway: string, seq: number, spentNanos: number, heldNanos: number, nowMs: number, ledgerTtlMs: number): void {
    (pipeline as unknown as LedgerRedis).spotSettle(ledgerKey, gateway, seq, spentNanos, heldNanos, nowMs, ledgerTtlMs);
  }

  /** seed.lua: a missing ledger starts from the month's spend (first writer wins). */
  seed(ledgerKey: string, spentNanos: number, ledgerTtlMs: number): Promise<number> {
    return this.redis.spotSeed(ledgerKey, spentNanos, ledgerTtlMs);
  }

  /** register.lua: this gateway is alive; resolves with the number of live gateways. */
  register(registryKey: string, gateway: string, nowMs: number): Promise<number> {
    return this.redis.spotRegister(registryKey, gateway, nowMs);
  }
}
