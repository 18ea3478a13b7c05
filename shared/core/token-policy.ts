/**
 * When a cached token serves a request, and when it is refreshed: the one place these rules live (CONTRACT §3).
 */

/** A cached access token. Times are epoch milliseconds. */
export interface CachedToken {
  readonly accessToken: string;
  readonly tokenType: string;
  readonly scope: string | undefined;
  readonly issuedAt: number;
  readonly expiresAt: number;
  /** When a refresh ahead of expiry should start (a jittered share of the lifetime). */
  readonly refreshAt: number;
  /** The connector's `tokenRevision` (its request settings) the token was fetched with. */
  readonly tokenRevision: string;
}

/** What a caller needs of a token. */
export interface TokenRequirement {
  /** The connector's current request settings: a token fetched with others does not serve. */
  readonly tokenRevision: string;
  /** Seconds the token must still be valid; counts as at most half the token's lifetime. */
  readonly minTtlSeconds: number;
  /** A forced refresh: only a token issued at or after this instant. */
  readonly issuedAfter?: number | undefined;
  /** A refresh ahead: only a token not yet past its refresh point. */
  readonly beforeRefreshPoint?: boolean | undefined;
  /** The schedule's idle exercise of a refresh token: only a token issued less than this long ago. */
  readonly maxAgeMs?: number | undefined;
}

/**
 * How long a token must still be valid for a caller asking `minTtlSeconds`: a `minTtl` above half of the token's
 * lifetime counts as half of it, so that short-lived tokens are still served from a cache (CONTRACT §3).
 */
export function requiredValidityMs(lifetimeMs: number, minTtlSeconds: number): number {
  return Math.min(minTtlSeconds * 1000, lifetimeMs / 2);
}

/** A token serves a caller while it has minTtl left; minTtl counts as at most half the token's lifetime. */
export function servesFor(token: CachedToken, minTtlSeconds: number, now: number): boolean {
  return token.expiresAt - now >= requiredValidityMs(token.expiresAt - token.issuedAt, minTtlSeconds);
}

/** Whether a token has expired (DynamoDB deletes expired items only lazily, so every read asks). */
export const isExpired = (token: Pick<CachedToken, 'expiresAt'>, now: number): boolean => token.expiresAt <= now;

/** The one decision whether a token serves a request. */
export function serves(token: CachedToken, requirement: TokenRequirement, now: number): boolean {
  return (
    token.tokenRevision === requirement.tokenRevision &&
    token.issuedAt >= (requirement.issuedAfter ?? Number.NEGATIVE_INFINITY) &&
    servesFor(token, requirement.minTtlSeconds, now) &&
    !isExpired(token, now) &&
    (requirement.beforeRefreshPoint !== true || token.refreshAt > now) &&
    (requirement.maxAgeMs === undefined || now - token.issuedAt < requirement.maxAgeMs)
  );
}

/** The last instant a token serves a caller with the default minTtl. */
function servableUntil(issuedAt: number, expiresAt: number, defaultMinTtlMs: number): number {
  return expiresAt - Math.min(defaultMinTtlMs, (expiresAt - issuedAt) / 2);
}

/**
 * How much of a token's servable window is kept back for its refresh: at most this long (one fetch with its retries,
 * 12 s by default, plus one scheduled run a minute apart, with room to spare), at most this share of the window for
 * short-lived tokens. Refreshing later than this risks callers waiting; earlier pays for tokens nobody used.
 */
export const REFRESH_MARGIN_CAP_MS = 90_000;
export const REFRESH_MARGIN_SHARE = 0.06;

/**
 * When to refresh ahead: the margin before the end of the servable window (the time the token can still be served
 * to a caller with the default minTtl), stretched by up to half again by jitter, so containers and connectors spread
 * out; at least three times as long as the fetch that brought the token took, so a slow server's refresh is done
 * before callers would wait for it. A one-hour token is fetched about 1.04 times per lifetime, a two-minute one about 2.1 times (a token serves
 * only half its lifetime to default callers when it lives less than two minimum TTLs).
 */
export function refreshAtFor(
  issuedAt: number,
  expiresAt: number,
  defaultMinTtlMs: number,
  random: () => number,
  options: {
    readonly marginShare?: number | undefined;
    /** How long the fetch that brought this token took: the margin is never less than three such fetches. */
    readonly fetchMs?: number | undefined;
  } = {},
): number {
  const until = servableUntil(issuedAt, expiresAt, defaultMinTtlMs);
  const window = until - issuedAt;
  const share = window * (options.marginShare ?? REFRESH_MARGIN_SHARE);
  // A slow token server gets the time its refresh needs (never more than half the window, nor the cap).
  const margin = Math.min(Math.max(share, 3 * (options.fetchMs ?? 0)), REFRESH_MARGIN_CAP_MS, window / 2);
  return Math.floor(until - margin * (1 + 0.5 * random()));
}

/**
 * When one process acts on a token's refresh point: spread, by the process's `spread` in [0, 1), over the first half
 * of the time from the refresh point to the last moment the token serves a default caller, so one container
 * refreshes and the others find its result.
 */
export function dueAt(token: CachedToken, defaultMinTtlMs: number, spread: number): number {
  const until = servableUntil(token.issuedAt, token.expiresAt, defaultMinTtlMs);
  return token.refreshAt + Math.max(0, until - token.refreshAt) * 0.5 * spread;
}
