import { accessDenied } from '../core/errors.ts';
import { splitScope } from '../core/identifiers.ts';
import type { CachedToken } from '../core/token-policy.ts';
import { parseConnector } from '../domain/connector.ts';
import type { ConnectorSource } from '../ports/connector-store.ts';
import type { RefreshDemand } from '../ports/refresh-requests.ts';
import type { TokenFetcher } from './refresh/token-fetcher.ts';
import { resolveScope } from './vend-request.ts';

export interface RefreshDemandedDeps {
  readonly source: ConnectorSource;
  readonly fetcher: TokenFetcher;
}

/**
 * The refresher's side of `async` refresh ahead: refreshes the demanded token through the same lease as every
 * other refresh, unless someone already did or is doing it. Undefined when there was nothing to do.
 */
export async function refreshDemanded(
  deps: RefreshDemandedDeps,
  demand: RefreshDemand,
): Promise<CachedToken | undefined> {
  const ref = { family: demand.family, connectorId: demand.connectorId };
  const text = await deps.source.read(ref);
  if (text === undefined) throw accessDenied();
  const connector = parseConnector(ref, text);
  // The same token key and scope a vend of that scope set names (a subset of the connector's, or invalid_request).
  const { tokenKey, scope } = resolveScope(connector, demand.scopeKey === '' ? undefined : splitScope(demand.scopeKey));
  return deps.fetcher.fetch(
    { connector, tokenKey, scope },
    {
      requirement: { tokenRevision: connector.tokenRevision, minTtlSeconds: 0, beforeRefreshPoint: true },
      background: true,
    },
  );
}
