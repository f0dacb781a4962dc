/** A seeded preemption trace for bench/spot.ts: when each spot replica is taken, with or without a notice first. */

/** A seeded PRNG (mulberry32): the same seed gives the same trace and the same load on every machine. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An exponential variate of mean `meanMs` (Poisson arrivals' gaps). */
export function exponential(random: () => number, meanMs: number): number {
  return -Math.log(1 - random()) * meanMs;
}

/** One preemption of one replica, in ms from the start of the run. */
export interface Preemption {
  replica: number;
  /** The notice (deadline `killAtMs`), or null: the machine vanishes without one. */
  noticeAtMs: number | null;
  /** The SIGKILL (for a notice: its deadline). */
  killAtMs: number;
  /** The replacement starts on the same port. */
  restartAtMs: number;
}

export interface TraceOptions {
  replicas: number;
  durationMs: number;
  /** The share of the run each replica is up (from restart to kill), e.g. 0.8. */
  uptime: number;
  /** Mean downtime of one preemption: the number of preemptions per replica is the downtime over this. */
  downtimeMs: number;
  /** How long a notice comes before its kill. */
  noticeMs: number;
  /** No preemption in the first and last `quietMs` of the run (warm-up, and every replica up at the end). */
  quietMs: number;
}

/**
 * Each replica is down `(1 - uptime) * durationMs` in all, in `round(that / downtimeMs)` outages of equal length,
 * one in each equal slot of the run between its quiet ends, at a random point of the slot (replicas drawn
 * independently, so their outages may overlap: then the spot tier is gone). Half of all preemptions (rounded
 * down), drawn at random, come with a notice `noticeMs` before the kill.
 * @throws Error when the outages, with their notices, do not fit in their slots.
 */
export function preemptionTrace(random: () => number, o: TraceOptions): Preemption[] {
  const downTotal = (1 - o.uptime) * o.durationMs;
  const perReplica = Math.max(1, Math.round(downTotal / o.downtimeMs));
  const down = downTotal / perReplica;
  const span = o.durationMs - 2 * o.quietMs;
  const slot = span / perReplica;
  if (slot < o.noticeMs + down) {
    throw new Error(`${perReplica} outages of ${(down / 1000).toFixed(1)} s with a ${o.noticeMs / 1000} s notice do not fit in ${(slot / 1000).toFixed(1)} s slots: run longer, or lower --downtime or --notice`);
  }
  const out: Preemption[] = [];
  for (let replica = 0; replica < o.replicas; replica++) {
    for (let k = 0; k < perReplica; k++) {
      const from = o.quietMs + k * slot + o.noticeMs;
      const killAtMs = from + random() * (slot - o.noticeMs - down);
      out.push({ replica, noticeAtMs: null, killAtMs, restartAtMs: killAtMs + down });
    }
  }
  out.sort((a, b) => a.killAtMs - b.killAtMs);
  // a seeded shuffle of the indices; the first half get a notice
  const order = out.map((_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  for (const i of order.slice(0, Math.floor(out.length / 2))) out[i].noticeAtMs = out[i].killAtMs - o.noticeMs;
  return out;
}
