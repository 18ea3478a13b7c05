import { errorFields } from '../core/errors.ts';
import { refKey, refOfKey, tokenKeyOf } from '../core/identifiers.ts';
import { type CachedToken, serves, type TokenRequirement } from '../core/token-policy.ts';
import { type Connector, parseConnector } from '../domain/connector.ts';
import { type ConnectorHealth, healthOf } from '../domain/health.ts';
import { DEFAULT_IDLE_REFRESH_MS, isScheduled, nextDueAt } from '../domain/schedule.ts';
import type { Clock } from '../ports/clock.ts';
import type { ConnectorSource } from '../ports/connector-store.ts';
import type { Log } from '../ports/log.ts';
import type { MetricsSink } from '../ports/metrics.ts';
import type { ConnectorState, ConnectorStateTable, TokenCache } from '../ports/token-table.ts';
import type { TokenFetcher } from './refresh/token-fetcher.ts';
import type { TokenMemory } from './token-memory.ts';

export interface RotateDeps {
  readonly source: ConnectorSource;
  readonly store: TokenCache & Pick<ConnectorStateTable, 'getState' | 'listDue' | 'setDue'>;
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
  /** Most connectors one run takes from the due index; the rest stay due for the next. @default 2 000 */
  readonly maxConnectors?: number;
}

export interface RotationReport {
  /** Connectors that were due. */
  readonly connectors: number;
  /** Tokens refreshed by this run. */
  readonly refreshed: number;
  /** Connectors whose refresh failed in this run, or whose document is invalid. */
  readonly failed: number;
  /** Left alone: in backoff after failures, or needing re-authorization. */
  readonly skipped: number;
  /** Not started because the run's budget was spent; they stay due, first in line for the next run. */
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

/** Retried this long after an unreadable document or an unreadable state, unless a sync comes first. */
const RETRY_UNREADABLE_MS = 5 * 60_000;

/**
 * The scheduled run: takes the connectors that are due from the table's due index (oldest first; a document is read
 * only for those) and gets each one's default-scope token refreshed when it is missing, past its refresh point, or
 * (refresh tokens) older than the idle interval, through the same lease as vends; then sets when it is next due.
 * Failing connectors wait out their backoff; connectors needing re-authorization leave the schedule until their
 * document changes (a sync puts them back). One connector's failure never stops the others.
 */
export async function rotateConnectors(deps: RotateDeps, options: RotationOptions = {}): Promise<RotationReport> {
  const started = deps.clock.now();
  const budgetMs = options.budgetMs ?? 60_000;
  const idleRefreshMs = options.idleRefreshMs ?? DEFAULT_IDLE_REFRESH_MS;
  const due = await deps.store.listDue(started, options.maxConnectors ?? 2_000);
  const outcomes: Outcome[] = [];
  const health: ConnectorHealth[] = [];

  await forEachLimited(due, options.concurrency ?? 16, async (connectorKey: string) => {
    if (deps.clock.now() - started >= budgetMs) {
      outcomes.push('unreached');
      return;
    }
    const ref = refOfKey(connectorKey);
    let connector: Connector | undefined;
    try {
      const text = ref === undefined ? undefined : await deps.source.read(ref);
      connector = text === undefined || ref === undefined ? undefined : parseConnector(ref, text);
    } catch (error) {
      outcomes.push('failed');
      deps.log.warn('scheduled refresh skipped an unreadable connector', {
        connector: connectorKey,
        ...errorFields(error),
      });
      await setDue(deps, connectorKey, deps.clock.now() + RETRY_UNREADABLE_MS);
      return;
    }
    if (connector === undefined || !isScheduled(connector.document)) {
      outcomes.push('unmanaged');
      await setDue(deps, connectorKey, undefined);
      return;
    }
    const outcome = await refreshOne(deps, connector, idleRefreshMs);
    outcomes.push(outcome.result);
    health.push(outcome.after);
    await setDue(deps, connectorKey, outcome.nextDue);
  });

  const count = (result: Outcome) => outcomes.filter((outcome) => outcome === result).length;
  const report: RotationReport = {
    connectors: due.length,
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

/** Moves a connector on the schedule; a table that refuses leaves it due, so the next run looks again. */
async function setDue(deps: RotateDeps, connectorKey: string, dueAt: number | undefined): Promise<void> {
  await deps.store.setDue(connectorKey, dueAt).catch((error: unknown) => {
    deps.log.warn('the schedule could not record when a connector is next due', {
      connector: connectorKey,
      ...errorFields(error),
    });
  });
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
): Promise<{ result: Outcome; after: ConnectorHealth; nextDue: number | undefined }> {
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
      nextDue: deps.clock.now() + RETRY_UNREADABLE_MS,
    };
  }
  const before = healthOf(connector, state);
  const now = deps.clock.now();
  const backingOff = before.state === 'failing' && (state.failure?.nextAttemptAt ?? 0) > now;
  if (before.state === 'needs_reauthorization') return { result: 'skipped', after: before, nextDue: undefined };
  if (backingOff) return { result: 'skipped', after: before, nextDue: state.failure?.nextAttemptAt };

  const tokenKey = tokenKeyOf(connectorKey);
  let result: Outcome = 'fresh';
  let current: CachedToken | undefined;
  try {
    const cached = await deps.store.getToken(tokenKey, now);
    current = cached;
    const requirement = freshEnough(connector, idleRefreshMs);
    if (cached === undefined || !serves(cached, requirement, now)) {
      const token = await deps.fetcher.fetch(
        { connector, tokenKey, scope: connector.document.scope },
        { requirement, background: true },
      );
      if (token !== undefined) {
        deps.memory.set(tokenKey, token, deps.clock.now());
        current = token;
        result = 'refreshed';
      }
    }
    // A document left behind (its store was down, or its checkpoint interval had not passed) catches up here.
    if (result === 'fresh' && state.chain !== undefined) await deps.fetcher.chains.checkpoint(connector, state.chain);
  } catch (error) {
    result = 'failed';
    deps.log.warn('scheduled refresh failed', { connector: connectorKey, ...errorFields(error) });
  }
  const latest = result === 'fresh' ? state : await deps.store.getState(connectorKey).catch(() => state);
  const after = result === 'fresh' ? before : healthOf(connector, latest);
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
  return { result, after, nextDue: nextLook(deps, connector, after, latest, current, idleRefreshMs) };
}

/**
 * When the schedule looks at a connector again: never while it needs re-authorization (a sync of its changed
 * document puts it back), when its backoff ends while it fails, else when its token is next due.
 */
function nextLook(
  deps: Pick<RotateDeps, 'clock'>,
  connector: Connector,
  health: ConnectorHealth,
  state: ConnectorState,
  token: CachedToken | undefined,
  idleRefreshMs: number,
): number | undefined {
  if (health.state === 'needs_reauthorization') return undefined;
  const retry = deps.clock.now() + RETRY_UNREADABLE_MS;
  if (health.state === 'failing') return state.failure?.nextAttemptAt ?? retry;
  return token === undefined ? retry : nextDueAt(connector.document, token, idleRefreshMs);
}
