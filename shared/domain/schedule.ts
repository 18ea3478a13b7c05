import type { CachedToken } from '../core/token-policy.ts';
import type { ConnectorDocument } from './connector.ts';

/** A refresh token is exercised at least this often even when nobody vends it (servers expire idle ones). */
export const DEFAULT_IDLE_REFRESH_MS = 24 * 3600_000;

/** Whether the schedule keeps the connector's default-scope token fresh (CONTRACT §2: refresh tokens, `prewarm`). */
export const isScheduled = (document: Pick<ConnectorDocument, 'grantType' | 'prewarm'>): boolean =>
  document.grantType === 'refresh_token' || document.prewarm === true;

/**
 * When the schedule should next look at a connector whose default-scope token is `token`: its refresh point, and
 * for a refresh token no later than the idle interval after it was issued. Undefined when it is not scheduled.
 */
export function nextDueAt(
  document: Pick<ConnectorDocument, 'grantType' | 'prewarm'>,
  token: Pick<CachedToken, 'refreshAt' | 'issuedAt'>,
  idleRefreshMs: number,
): number | undefined {
  if (!isScheduled(document)) return undefined;
  return document.grantType === 'refresh_token'
    ? Math.min(token.refreshAt, token.issuedAt + idleRefreshMs)
    : token.refreshAt;
}
