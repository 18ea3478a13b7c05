import { errorFields } from '../core/errors.ts';
import { type ConnectorRef, refKey, tokenKeyOf } from '../core/identifiers.ts';
import { serves, type TokenRequirement } from '../core/token-policy.ts';
import { type Connector, parseConnector } from '../domain/connector.ts';
import { type ConnectorHealth, healthOf } from '../domain/health.ts';
import type { Clock } from '../ports/clock.ts';
import type { ConnectorSource } from '../ports/connector-store.ts';
import type { Log } from '../ports/log.ts';
import type { MetricsSink } from '../ports/metrics.ts';
import type { ConnectorState, ConnectorStateTable, TokenCache } from '../ports/token-table.ts';
import type { TokenFetcher } from './refresh/token-fetcher.ts';
import type { TokenMemory } from './token-memory.ts';

export interface RotateDeps {
  readonly source: ConnectorSource;
  readonly store: TokenCache & Pick<ConnectorStateTable, 'getState'>;
  readonly fetcher: TokenFetcher;
  readonly memory: TokenMemory;
  readonly clock: Clock;
  readonly log: Log;
  readonly metrics: MetricsSink;
}

export interface RotationOptions {
  /** Connectors worked on at once. @default 16 */
  readonly concurrency?: number;
  /** No connector is started after this long, so the run ends well inside its timeout. @default 60 000 */
  readonly budgetMs?: number;
  /** A refresh-token connector is exercised at least this often, even when nobody vends it. @default 24 h */
  readonly idleRefreshMs?: number;
}

export interface RotationReport {
  readonly connectors: number;
  /** Tokens refreshed by this run. */
  readonly refreshed: number;
  /** Connectors whose refresh failed in this run, or whose document is invalid. */
  readonly failed: number;
  /** Left alone: in backoff after failures, or needing re-authorization. */
  readonly skipped: number;
  /** Not started because the run's budget was spent; the next run picks them up. */
  readonly unreached: number;
  readonly needsReauthorization: number;
  readonly health: readonly ConnectorHealth[];
}

/** Runs `work` over `items` with at most `limit` in flight. */
async function forEachLimited<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++] as T;
      await work(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

type Outcome = 'refreshed' | 'fresh' | 'failed' | 'skipped' | 'unreached' | 'unmanaged';

/**
 * The scheduled run: every refresh-token connector and every `prewarm` connector gets its default-scope token
 * refreshed when it is missing, past its refresh point, or (refresh tokens) older than the idle interval, through
 * the same lease as vends. Failing connectors wait out their backoff; connectors needing re-authorization are left
 * alone until their document changes. One connector's failure never stops the others.
 */
export async function rotateConnectors(deps: RotateDeps, options: RotationOptions = {}): Promise<RotationReport> {
  const started = deps.clock.now();
  const budgetMs = options.budgetMs ?? 60_000;
  const idleRefreshMs = options.idleRefreshMs ?? 24 * 3600_000;
  const refs = await deps.source.list();
  const outcomes: Outcome[] = [];
  const health: ConnectorHealth[] = [];

  await forEachLimited(refs, options.concurrency ?? 16, async (ref: ConnectorRef) => {
    if (deps.clock.now() - started >= budgetMs) {
      outcomes.push('unreached');
      return;
    }
    let connector: Connector;
    try {
      const text = await deps.source.read(ref);
      if (text === undefined) return;
      connector = parseConnector(ref, text);
    } catch (error) {
      outcomes.push('failed');
      deps.log.warn('scheduled refresh skipped an unreadable connector', {
        connector: refKey(ref),
        ...errorFields(error),
      });
      return;
    }
    if (connector.document.grantType !== 'refresh_token' && connector.document.prewarm !== true) {
      outcomes.push('unmanaged');
      return;
    }
    const outcome = await refreshOne(deps, connector, idleRefreshMs);
    outcomes.push(outcome.result);
    health.push(outcome.after);
  });

  const count = (result: Outcome) => outcomes.filter((outcome) => outcome === result).length;
  const report: RotationReport = {
    connectors: refs.length,
    refreshed: count('refreshed'),
    failed: count('failed'),
    skipped: count('skipped'),
    unreached: count('unreached'),
    needsReauthorization: health.filter((entry) => entry.state === 'needs_reauthorization').length,
    health: health.sort((a, b) => a.connector.localeCompare(b.connector)),
  };
  deps.metrics.count('ScheduledRefreshes', report.refreshed);
  deps.metrics.count('ScheduledRunFailures', report.failed);
  deps.metrics.count('ConnectorsFailing', health.filter((entry) => entry.state === 'failing').length);
  deps.metrics.count('ConnectorsNeedingReauthorization', report.needsReauthorization);
  const { health: _, ...summary } = report;
  deps.log.info('scheduled rotation finished', { ...summary, durationMs: deps.clock.now() - started });
  return report;
}

/**
 * What a connector's default-scope token must be for the schedule to leave it alone: fetched with the current
 * settings, not yet past its refresh point, and, for a refresh token, exercised within the idle interval.
 */
function freshEnough(connector: Connector, idleRefreshMs: number): TokenRequirement {
  return {
    tokenRevision: connector.tokenRevision,
    minTtlSeconds: 0,
    beforeRefreshPoint: true,
    maxAgeMs: connector.document.grantType === 'refresh_token' ? idleRefreshMs : undefined,
  };
}

async function refreshOne(
  deps: RotateDeps,
  connector: Connector,
  idleRefreshMs: number,
): Promise<{ result: Outcome; after: ConnectorHealth }> {
  const connectorKey = refKey(connector.ref);
  let state: ConnectorState;
  try {
    state = await deps.store.getState(connectorKey);
  } catch (error) {
    deps.log.warn('scheduled refresh could not read connector state', {
      connector: connectorKey,
      ...errorFields(error),
    });
    return {
      result: 'failed',
      after: { connector: connectorKey, state: 'failing', lastError: 'upstream_unavailable' },
    };
  }
  const before = healthOf(connector, state);
  const now = deps.clock.now();
  const backingOff = before.state === 'failing' && (state.failure?.nextAttemptAt ?? 0) > now;
  if (before.state === 'needs_reauthorization' || backingOff) return { result: 'skipped', after: before };

  const tokenKey = tokenKeyOf(connectorKey);
  let result: Outcome = 'fresh';
  try {
    const cached = await deps.store.getToken(tokenKey, now);
    const requirement = freshEnough(connector, idleRefreshMs);
    if (cached === undefined || !serves(cached, requirement, now)) {
      const token = await deps.fetcher.fetch(
        { connector, tokenKey, scope: connector.document.scope },
        { requirement, background: true },
      );
      if (token !== undefined) {
        deps.memory.set(tokenKey, token, deps.clock.now());
        result = 'refreshed';
      }
    }
    // A document left behind (its store was down, or its checkpoint interval had not passed) catches up here.
    if (result === 'fresh' && state.chain !== undefined) await deps.fetcher.chains.checkpoint(connector, state.chain);
  } catch (error) {
    result = 'failed';
    deps.log.warn('scheduled refresh failed', { connector: connectorKey, ...errorFields(error) });
  }
  const after =
    result === 'fresh' ? before : healthOf(connector, await deps.store.getState(connectorKey).catch(() => state));
  if (after.state !== before.state) {
    deps.metrics.count('HealthStateChanges');
    // Called on the logger, never detached: Powertools' methods need their `this`.
    deps.log[after.state === 'ok' ? 'info' : 'warn']('connector health changed', {
      connector: connectorKey,
      from: before.state,
      to: after.state,
      lastError: after.lastError,
      upstreamError: after.upstreamError,
    });
  }
  return { result, after };
}
