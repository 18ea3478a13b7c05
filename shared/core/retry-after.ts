/**
 * `Retry-After` as whole seconds to wait: delta-seconds or an HTTP date (RFC 9110 §10.2.3). Undefined when absent,
 * malformed, or a date already past (nothing to wait for).
 */
export function parseRetryAfter(value: string | null | undefined, now: number): number | undefined {
  if (value === null || value === undefined) return undefined;
  const trimmed = value.trim();
  const seconds = /^\d+$/.test(trimmed) ? Number(trimmed) : (Date.parse(trimmed) - now) / 1000;
  return Number.isFinite(seconds) && seconds >= 0 ? Math.ceil(seconds) : undefined;
}
