import { errorFields } from '../core/errors.ts';
import { type ConnectorRef, refKey, scopeKeyOf } from '../core/identifiers.ts';
import { LruCache } from '../core/lru.ts';
import { type CachedToken, dueAt, serves } from '../core/token-policy.ts';
import { within } from '../domain/deadline.ts';
import { profileOf } from '../domain/vend-profile.ts';
import type { Clock } from '../ports/clock.ts';
import type { Log } from '../ports/log.ts';
import type { MetricsSink } from '../ports/metrics.ts';
import type { RefreshDemand, RefreshRequests } from '../ports/refresh-requests.ts';
import type { ConnectorStateTable, TokenCache } from '../ports/token-table.ts';
import type { FetchTarget, TokenFetcher } from './refresh/token-fetcher.ts';
import type { TokenMemory } from './token-memory.ts';

/**
 * `background`: a long-lived process refreshes detached and no caller waits. `async`: in Lambda, the refresh is
 * handed to the refresher function (an asynchronous invocation), because a detached promise freezes with the
 * container after its response and could strand a rotated refresh token mid-exchange. `inline`: in Lambda without a
 * refresher, the one caller that wins the lease waits for the refresh; everyone else is served at once.
 */
export type RefreshAheadMode = 'background' | 'inline' | 'async';

/** How long a vend waits for the table's newer token or for the refresher's invocation to be queued. */
const HAND_OVER_WITHIN_MS = 300;
/** One demand per token key per process per second is enough: the refresher takes the lease once. */
const DEMAND_SPACING_MS = 1_000;

/** Sends refresh demands, at most one per token key per second from this process. */
export class ThrottledRefreshRequests {
  readonly #requests: RefreshRequests;
  readonly #lastSent = new LruCache<string, number>(10_000);

  constructor(requests: RefreshRequests) {
    this.#requests = requests;
  }

  /** False when a demand for this key left less than a second ago. */
  shouldSend(tokenKey: string, now: number): boolean {
    const last = this.#lastSent.get(tokenKey);
    if (last !== undefined && now - last < DEMAND_SPACING_MS) return false;
    this.#lastSent.set(tokenKey, now);
    return true;
  }

  send(demand: RefreshDemand): Promise<void> {
    return this.#requests.request(demand);
  }
}

export interface RefreshAheadDeps {
  readonly store: TokenCache & Pick<ConnectorStateTable, 'getState'>;
  readonly fetcher: TokenFetcher;
  readonly memory: TokenMemory;
  readonly clock: Clock;
  readonly log: Log;
  readonly metrics: MetricsSink;
  readonly refreshRequests?: ThrottledRefreshRequests | undefined;
  readonly settings: {
    readonly refreshAhead: RefreshAheadMode;
    readonly defaultMinTtlSeconds: number;
    readonly refreshSpread: number;
  };
}

/** A served token's place: what a refresh ahead needs, the connector document only once it refreshes here. */
export interface AheadTarget {
  readonly ref: ConnectorRef;
  readonly tokenKey: string;
  readonly tokenRevision: string;
  /** Reads the connector document for the fetch: served tokens never read it, refreshes do. */
  readonly load: () => Promise<FetchTarget>;
}

/**
 * Past its refresh point (spread per process), a served token gets one refresh ahead; the token itself is still good
 * to serve, and is what the caller gets unless `inline` makes the one lease holder wait.
 */
export async function refreshAheadIfDue(
  deps: RefreshAheadDeps,
  target: AheadTarget,
  token: CachedToken,
): Promise<CachedToken> {
  const { clock, settings } = deps;
  if (clock.now() < dueAt(token, settings.defaultMinTtlSeconds * 1000, settings.refreshSpread)) return token;
  const requirement = { tokenRevision: target.tokenRevision, minTtlSeconds: 0, beforeRefreshPoint: true };
  if (settings.refreshAhead === 'async') return handOver(deps, target, token);
  const refresh = target
    .load()
    .then(async (loaded) => {
      const fresh = await deps.fetcher.fetch(loaded, { requirement, background: true });
      if (fresh !== undefined && fresh.accessToken !== token.accessToken) countOnce(deps, target.tokenKey, fresh);
      if (fresh !== undefined) deps.memory.set(target.tokenKey, fresh, clock.now(), profileOf(loaded.connector));
      return fresh ?? token;
    })
    .catch((error: unknown) => {
      deps.log.warn('refresh ahead failed; the cached token is still served', {
        connector: refKey(target.ref),
        ...errorFields(error),
      });
      return token;
    });
  return settings.refreshAhead === 'inline' ? refresh : token;
}

/** Tokens a refresh ahead brought, counted once each however many vends shared that refresh. */
const countedAhead = new LruCache<string, true>(1_000);
function countOnce(deps: Pick<RefreshAheadDeps, 'metrics'>, tokenKey: string, fresh: CachedToken): void {
  const key = `${tokenKey}@${fresh.issuedAt}`;
  if (countedAhead.get(key) !== undefined) return;
  countedAhead.set(key, true);
  deps.metrics.count('RefreshesAhead');
}

/**
 * `async`: another container may have refreshed already (the table is one read away); if not, the refresher gets a
 * demand. Either way this caller is served now, and nothing is left running after its response.
 */
async function handOver(deps: RefreshAheadDeps, target: AheadTarget, token: CachedToken): Promise<CachedToken> {
  const { clock, refreshRequests } = deps;
  if (refreshRequests === undefined || !refreshRequests.shouldSend(target.tokenKey, clock.now())) return token;
  const connector = refKey(target.ref);
  try {
    const stored = await within(deps.store.getToken(target.tokenKey, clock.now()), HAND_OVER_WITHIN_MS, 'The table');
    const notDue = { tokenRevision: token.tokenRevision, minTtlSeconds: 0, beforeRefreshPoint: true };
    if (stored !== undefined && serves(stored, notDue, clock.now())) {
      deps.memory.set(target.tokenKey, stored, clock.now());
      return stored;
    }
    // A refresh under way (a live lease) needs no demand: its token is in the table before the lease is free.
    const state = await within(deps.store.getState(connector, { secrets: false }), HAND_OVER_WITHIN_MS, 'The table');
    if (state.lease !== undefined && state.lease.until > clock.now()) return token;
    const { family, connectorId } = target.ref;
    const scopeKey = scopeKeyOf(target.tokenKey);
    await within(refreshRequests.send({ family, connectorId, scopeKey }), HAND_OVER_WITHIN_MS, 'The refresher');
    deps.metrics.count('RefreshesAhead');
  } catch (error) {
    deps.log.warn('refresh ahead could not be handed over; the cached token is still served', {
      connector,
      ...errorFields(error),
    });
  }
  return token;
}
