import { accessDenied, invalidRequest } from '../core/errors.ts';
import { refKey, splitScope, tokenKeyOf } from '../core/identifiers.ts';
import type { CachedToken } from '../core/token-policy.ts';
import { parseConnector } from '../domain/connector.ts';
import type { ConnectorSource } from '../ports/connector-store.ts';
import type { RefreshDemand } from '../ports/refresh-requests.ts';
import type { TokenFetcher } from './refresh/token-fetcher.ts';

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
  const configured = new Set(splitScope(connector.document.scope ?? ''));
  const requested = splitScope(demand.scopeKey);
  if (!requested.every((scope) => configured.has(scope))) {
    throw invalidRequest("The demanded scope is not a subset of the connector's scope.");
  }
  return deps.fetcher.fetch(
    {
      connector,
      tokenKey: tokenKeyOf(refKey(ref), demand.scopeKey),
      scope: demand.scopeKey === '' ? connector.document.scope : demand.scopeKey,
    },
    {
      requirement: { tokenRevision: connector.tokenRevision, minTtlSeconds: 0, beforeRefreshPoint: true },
      background: true,
    },
  );
}
