import { errorFields, VendorError } from '../core/errors.ts';
import { type ConnectorRef, refKey, tokenKeyOf } from '../core/identifiers.ts';
import { type CachedToken, serves, type TokenRequirement } from '../core/token-policy.ts';
import type { VendResponse } from '../core/vend-response.ts';
import { within } from '../domain/deadline.ts';
import type { NetworkPolicy } from '../domain/network-policy.ts';
import { authorizeByProfile, profileOf, scopeKeyFor, type VendProfile } from '../domain/vend-profile.ts';
import type { Clock } from '../ports/clock.ts';
import type { Log } from '../ports/log.ts';
import type { MetricsSink } from '../ports/metrics.ts';
import type { ConnectorStateTable, TokenCache, TokenEntry } from '../ports/token-table.ts';
import type { ConnectorDocuments } from './connector-documents.ts';
import type { TokenFetcher } from './refresh/token-fetcher.ts';
import {
  type AheadTarget,
  type RefreshAheadMode,
  refreshAheadIfDue,
  type ThrottledRefreshRequests,
} from './refresh-ahead.ts';
import type { TokenMemory } from './token-memory.ts';
import {
  type HeaderSettings,
  prepareRequest,
  STILL_VALID_WITHIN_MS,
  toVendResponse,
  type VendRequest,
  validateRequest,
} from './vend-request.ts';

export interface VendSettings {
  /** Where token URLs may point (CONTRACT §4: `http://` only to loopback, in local mode). */
  readonly network: NetworkPolicy;
  /** How long a token held in memory is served without looking at the table again. */
  readonly memoryStalenessMs: number;
  readonly defaultMinTtlSeconds: number;
  /**
   * How a due token is refreshed ahead (see refresh-ahead.ts): `background` in a long-lived process, `async` (handed
   * to the refresher) or `inline` in Lambda.
   */
  readonly refreshAhead: RefreshAheadMode;
  /**
   * This process's place, in [0, 1), in the window after a token's refresh point: containers holding the same hot
   * token act on it at different moments, so the first one's refresh is seen by the rest before they try.
   */
  readonly refreshSpread: number;
}

export interface VendDeps {
  readonly documents: ConnectorDocuments;
  /** Where `async` refresh ahead sends due tokens. */
  readonly refreshRequests?: ThrottledRefreshRequests | undefined;
  readonly store: TokenCache & Pick<ConnectorStateTable, 'getState'>;
  readonly fetcher: TokenFetcher;
  readonly memory: TokenMemory;
  readonly clock: Clock;
  readonly log: Log;
  readonly metrics: MetricsSink;
  readonly settings: VendSettings;
}

/**
 * The vending use case (CONTRACT §3, `GET /tokens/{family}/{connectorId}`): validate, authorize, then serve from
 * memory, from the table, or from one fetch shared by every process; refresh ahead of expiry. A token served from
 * memory or the table is authorized and answered by the profile stored beside it: the hit path reads no secret.
 */
export async function vendToken(deps: VendDeps, request: VendRequest): Promise<VendResponse> {
  const { clock, memory, metrics, settings } = deps;
  const started = clock.now();
  const { ref, scopes, minTtlSeconds } = validateRequest(request);
  const minTtl = minTtlSeconds ?? settings.defaultMinTtlSeconds;
  const connectorKey = refKey(ref);
  const ahead = (tokenKey: string, tokenRevision: string): AheadTarget => ({
    ref,
    tokenKey,
    tokenRevision,
    load: async () => (await prepareRequest(deps, request)).target,
  });

  // The requested scope set names the token key unless it is the connector's whole scope: then a second look.
  let tokenKey = tokenKeyOf(connectorKey, scopes?.join(' ') ?? '');
  let held: { token: CachedToken; profile: VendProfile | undefined } | undefined;
  let stored: CachedToken | undefined;
  for (let look = 0; look < 2; look++) {
    const remembered = memory.getWithProfile(tokenKey, clock.now(), settings.memoryStalenessMs);
    let entry: TokenEntry;
    if (remembered !== undefined) {
      entry = remembered;
    } else {
      // A token this process still holds is served if the table does not answer soon (CONTRACT §3).
      held = memory.peek(tokenKey, clock.now());
      try {
        const read = deps.store.readEntry(tokenKey, clock.now());
        entry = await (held === undefined
          ? read
          : within(read, started + STILL_VALID_WITHIN_MS - clock.now(), 'The token table'));
      } catch (error) {
        // The table is down: a token this container still holds, of any age, beats a 503.
        if (held === undefined) throw error;
        const profile = held.profile ?? profileOf((await prepareRequest(deps, request)).connector);
        authorizeByProfile(profile, ref.family, request.caller);
        return serveStillValid(deps, ref, profile, held.token, error);
      }
    }
    const { profile, token } = entry;
    if (profile === undefined) break;
    authorizeByProfile(profile, ref.family, request.caller);
    const rightKey = tokenKeyOf(connectorKey, scopeKeyFor(profile, scopes));
    if (rightKey !== tokenKey) {
      tokenKey = rightKey;
      continue;
    }
    stored = token;
    if (
      token !== undefined &&
      serves(token, { tokenRevision: profile.tokenRevision, minTtlSeconds: minTtl }, clock.now())
    ) {
      metrics.count(remembered === undefined ? 'TableHits' : 'MemoryHits');
      if (remembered === undefined) memory.set(tokenKey, token, clock.now(), profile);
      const served = await refreshAheadIfDue(deps, ahead(tokenKey, profile.tokenRevision), token);
      return toVendResponse(profile, served, clock.now());
    }
    break;
  }

  // Nothing cached serves: the connector document decides (the secret is read only now), and one fetch is shared.
  const { connector, target, deadline } = await prepareRequest(deps, request);
  const requirement: TokenRequirement = { tokenRevision: connector.tokenRevision, minTtlSeconds: minTtl };
  let fetched: CachedToken | undefined;
  const fetchStarted = clock.now();
  try {
    fetched = await deps.fetcher.fetch(target, { requirement, deadline });
    metrics.count('TokenFetches');
    metrics.milliseconds('TokenFetchLatency', clock.now() - fetchStarted);
  } catch (error) {
    metrics.count('TokenFetchFailures');
    // What this vend found for the key the fetch was for: the table's token when it was fetched with today's
    // settings, else the one this container holds.
    const fallback =
      target.tokenKey !== tokenKey
        ? undefined
        : stored?.tokenRevision === connector.tokenRevision
          ? stored
          : held?.token;
    const current = await stillCurrent(deps, target.tokenKey, fallback);
    return serveStillValid(deps, ref, connector.document, current, error);
  }
  if (fetched === undefined) throw new VendorError('internal_error', 'No token was obtained.');
  memory.set(target.tokenKey, fetched, clock.now(), profileOf(connector));
  return toVendResponse(connector.document, fetched, clock.now());
}

/**
 * The token read before the fetch, unless it has left the table since (a forced refresh anywhere discarded it, and
 * the contract says a discarded token is not served again). A table that does not answer cannot say: then it is kept.
 */
async function stillCurrent(
  deps: Pick<VendDeps, 'store' | 'clock'>,
  tokenKey: string,
  token: CachedToken | undefined,
): Promise<CachedToken | undefined> {
  if (token === undefined) return undefined;
  try {
    const current = await within(deps.store.getToken(tokenKey, deps.clock.now()), 1_000, 'The token table');
    return current?.accessToken === token.accessToken ? token : undefined;
  } catch {
    return token;
  }
}

/**
 * While the token server or the table is unavailable, a token that has not expired is served even below the
 * caller's minTtl (CONTRACT §3: 503 only when "no still-valid token is cached"). Anything else fails as it failed.
 */
function serveStillValid(
  deps: Pick<VendDeps, 'clock' | 'log' | 'metrics'>,
  ref: ConnectorRef,
  header: HeaderSettings,
  token: CachedToken | undefined,
  error: unknown,
): VendResponse {
  const unavailable = error instanceof VendorError && error.code === 'upstream_unavailable';
  if (!unavailable || token === undefined || token.expiresAt <= deps.clock.now()) throw error;
  deps.metrics.count('StillValidServed');
  deps.log.warn('serving a still-valid cached token while the refresh fails', {
    connector: refKey(ref),
    ...errorFields(error),
  });
  return toVendResponse(header, token, deps.clock.now());
}
