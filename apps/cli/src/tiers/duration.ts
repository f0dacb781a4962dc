/**
 * Seconds in a duration as an operator types it: `30s`, `2m`, `1h`, `1500ms`, `1.5m`, or a bare number of
 * seconds. Null when it is not one.
 */
export function parseDuration(text: string): number | null {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/i.exec(text);
  if (m === null) return null;
  const n = Number(m[1]);
  switch ((m[2] ?? 's').toLowerCase()) {
    case 'ms':
      return n / 1000;
    case 's':
      return n;
    case 'm':
      return n * 60;
    default:
      return n * 3600;
  }
}
