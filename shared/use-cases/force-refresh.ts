import { VendorError } from '../core/errors.ts';
import { refKey } from '../core/identifiers.ts';
import type { VendResponse } from '../core/vend-response.ts';
import type { NetworkPolicy } from '../domain/network-policy.ts';
import type { Clock } from '../ports/clock.ts';
import type { ForcedRefreshSlots, TokenCache } from '../ports/token-table.ts';
import type { ConnectorDocuments } from './connector-documents.ts';
import type { TokenFetcher } from './refresh/token-fetcher.ts';
import type { TokenMemory } from './token-memory.ts';
import { prepareRequest, toVendResponse, type VendRequest } from './vend-request.ts';

export interface ForceRefreshDeps {
  readonly documents: ConnectorDocuments;
  readonly store: TokenCache & ForcedRefreshSlots;
  readonly fetcher: TokenFetcher;
  readonly memory: TokenMemory;
  readonly clock: Clock;
  readonly settings: {
    readonly network: NetworkPolicy;
    /** Minimum spacing of forced refreshes per connector; 0 turns the limit off. */
    readonly forcedRefreshSpacingMs: number;
    readonly defaultMinTtlSeconds: number;
  };
}

/**
 * `POST /tokens/{family}/{connectorId}/refresh` (CONTRACT §3): discards the cached token and returns a new one, at
 * most once per connector every `forcedRefreshSpacingMs`. The discarded token is not served again, even when the
 * new fetch fails.
 */
export async function forceRefresh(deps: ForceRefreshDeps, request: VendRequest): Promise<VendResponse> {
  const { clock, memory, store, settings } = deps;
  const { connector, target, minTtlSeconds, deadline } = await prepareRequest(deps, request);
  const spacing = settings.forcedRefreshSpacingMs;
  if (spacing > 0) {
    const waitMs = await store.takeForcedRefreshSlot(refKey(connector.ref), clock.now(), spacing);
    if (waitMs !== undefined) {
      const seconds = Math.ceil(waitMs / 1000);
      throw new VendorError(
        'rate_limited',
        `Forced refresh of this connector was asked too often; retry in ${seconds} s.`,
        {
          retryAfterSeconds: seconds,
        },
      );
    }
  }
  // Discard first: if the new fetch fails, the old token is not served again.
  const discardedAt = clock.now();
  memory.delete(target.tokenKey);
  await store.deleteToken(target.tokenKey);
  const requirement = {
    tokenRevision: connector.tokenRevision,
    minTtlSeconds: minTtlSeconds ?? settings.defaultMinTtlSeconds,
    issuedAfter: discardedAt,
  };
  const token = await deps.fetcher.fetch(target, { requirement, deadline });
  if (token === undefined) throw new VendorError('internal_error', 'No token was obtained.');
  memory.set(target.tokenKey, token, clock.now());
  return toVendResponse(connector.document, token, clock.now());
}
