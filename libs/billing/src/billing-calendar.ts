/** Start of the UTC calendar month of `d`. */
export function monthStart(d: Date): Date {
  return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1));
}

/** Start of the UTC calendar month after the one of `d`. */
export function nextMonthStart(d: Date): Date {
  return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1));
}

/** Stripe takes meter events timed up to 35 days back; keep an hour of margin for events still in flight. */
export const METER_EVENT_MAX_AGE_MS = 35 * 86_400_000 - 3_600_000;

/**
 * When a rollup delta is billed: at its hour, unless that hour's month is closed (Stripe has invoiced it),
 * then at the start of the current month, so late usage lands on the open invoice instead of being lost.
 */
export function meterTimestamp(hour: Date, now: Date): Date {
  const open = monthStart(now);
  const at = hour < open ? open : hour;
  return at > now ? now : at;
}
