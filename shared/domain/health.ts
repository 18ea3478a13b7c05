import { refKey } from '../core/identifiers.ts';
import type { ConnectorState } from '../ports/token-table.ts';
import type { Connector } from './connector.ts';
import { awaitsAuthorization } from './connector.ts';

/**
 * A connector's health, derived from its state item: `needs_reauthorization` after the server refused its refresh
 * token (`invalid_grant`) or its client (`invalid_client`), until its document changes; `failing` after a failed
 * token request, until one succeeds; `ok` otherwise.
 */
export type HealthState = 'ok' | 'failing' | 'needs_reauthorization';

export interface ConnectorHealth {
  readonly connector: string;
  readonly state: HealthState;
  readonly consecutiveFailures?: number;
  readonly lastError?: string;
  readonly upstreamError?: string;
  /** When the schedule tries a failing connector again (ISO 8601). */
  readonly nextAttemptAt?: string;
  /**
   * The last refresh exchange got no answer after its request was sent: the server may have rotated the refresh
   * token. The next exchange presents the same one (README, "Guarantees").
   */
  readonly outcomeUnknown?: boolean;
}

export function healthOf(connector: Connector, state: ConnectorState): ConnectorHealth {
  const name = refKey(connector.ref);
  // Created with an authorization URL and never connected: nothing to refresh from until `token-vendor connect`.
  if (awaitsAuthorization(connector.document) && state.chain === undefined) {
    return { connector: name, state: 'needs_reauthorization', upstreamError: 'invalid_grant' };
  }
  if (state.reauthorization !== undefined && state.reauthorization.revision === connector.revision) {
    return { connector: name, state: 'needs_reauthorization', upstreamError: state.reauthorization.upstreamError };
  }
  const { failure } = state;
  if (failure !== undefined && failure.revision === connector.revision) {
    return {
      connector: name,
      state: 'failing',
      consecutiveFailures: failure.consecutive,
      lastError: failure.code,
      ...(failure.upstreamError === undefined ? {} : { upstreamError: failure.upstreamError }),
      ...(failure.nextAttemptAt === undefined ? {} : { nextAttemptAt: new Date(failure.nextAttemptAt).toISOString() }),
      ...(failure.unconfirmed === true ? { outcomeUnknown: true } : {}),
    };
  }
  return { connector: name, state: 'ok' };
}
