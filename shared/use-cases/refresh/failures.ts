import { errorFields, VendorError } from '../../core/errors.ts';
import { refKey } from '../../core/identifiers.ts';
import type { Connector } from '../../domain/connector.ts';
import { notAsked, outcomeUnknown } from '../../domain/oauth/token-client.ts';
import type { Clock } from '../../ports/clock.ts';
import type { Log } from '../../ports/log.ts';
import type { ConnectorState, ConnectorStateTable, Lease, TokenFailure } from '../../ports/token-table.ts';

/** After this many transient failures in a row, the circuit opens. */
const CIRCUIT_THRESHOLD = 3;
const CIRCUIT_BASE_MS = 5_000;
const CIRCUIT_MAX_MS = 60_000;

/** Opens the circuit for 5 s, doubling per further failure up to 60 s, jittered by ±20 %. */
export function circuitOpenUntil(at: number, consecutive: number, random: () => number): number | undefined {
  if (consecutive < CIRCUIT_THRESHOLD) return undefined;
  const base = Math.min(CIRCUIT_MAX_MS, CIRCUIT_BASE_MS * 2 ** (consecutive - CIRCUIT_THRESHOLD));
  return Math.round(at + base * (0.8 + 0.4 * random()));
}

const RETRY_BASE_MS = 60_000;
const RETRY_MAX_MS = 3_600_000;

/** When the schedule tries a failing connector again: 1 min, doubling per failure up to 1 h, ±20 % jitter. */
export function scheduledRetryAt(at: number, consecutive: number, random: () => number): number {
  const base = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** Math.max(0, consecutive - 1));
  return Math.round(at + base * (0.8 + 0.4 * random()));
}

/**
 * Until when nobody, in any container, calls the token server after a transient failure: the circuit's time, or the
 * server's own `Retry-After` when it asked for longer (a throttled server must not hear from the vendor before then).
 */
function openUntil(at: number, consecutive: number, error: VendorError, random: () => number): number | undefined {
  const circuit = circuitOpenUntil(at, consecutive, random);
  const asked = error.retryAfterSeconds === undefined ? undefined : at + error.retryAfterSeconds * 1000;
  if (circuit === undefined) return asked;
  return asked === undefined ? circuit : Math.max(circuit, asked);
}

/** The shared circuit, if open for this connector's current settings: 503 with when to come back. */
export function openCircuit(state: ConnectorState, connector: Connector, now: number): VendorError | undefined {
  const { failure } = state;
  if (failure?.openUntil === undefined || failure.openUntil <= now || failure.revision !== connector.revision) {
    return undefined;
  }
  return new VendorError('upstream_unavailable', 'The token server keeps failing; the vendor is backing off.', {
    retryAfterSeconds: Math.ceil((failure.openUntil - now) / 1000),
  });
}

export function needsReauthorization(upstreamError: string): VendorError {
  return new VendorError(
    'upstream_rejected',
    'The refresh token was rejected; the connector needs re-authorization (update its document).',
    { upstreamError },
  );
}

function failureError(failure: { code: string; upstreamError?: string | undefined }): VendorError {
  const code =
    failure.code === 'upstream_rejected' || failure.code === 'upstream_invalid_response'
      ? failure.code
      : 'upstream_unavailable';
  return new VendorError(code, 'The token request made for this connector just now failed.', {
    ...(failure.upstreamError === undefined ? {} : { upstreamError: failure.upstreamError }),
  });
}

/**
 * Why a holder must not ask the token server now, read from the connector's state: the holder before it failed while
 * it waited (share that answer rather than multiply load on the server), the circuit is open after repeated failures,
 * or the refresh token was refused and only a new document helps. Undefined when it may ask.
 */
export function refusalBeforeExchange(
  state: ConnectorState,
  connector: Connector,
  waitingSince: number,
  now: number,
): VendorError | undefined {
  const { failure, reauthorization } = state;
  if (failure !== undefined && failure.revision === connector.revision) {
    if (failure.at >= waitingSince) return failureError(failure);
    const open = openCircuit(state, connector, now);
    if (open !== undefined) return open;
  }
  if (
    connector.document.grantType === 'refresh_token' &&
    reauthorization?.revision === connector.revision &&
    reauthorization.upstreamError === 'invalid_grant'
  ) {
    return needsReauthorization(reauthorization.upstreamError);
  }
  return undefined;
}

export interface FailureRecorderDeps {
  readonly store: Pick<ConnectorStateTable, 'recordFailure' | 'markNeedsReauthorization'>;
  readonly clock: Clock;
  readonly log: Log;
}

/**
 * Records a failed exchange under the holder's lease: its backoff for the schedule, the shared circuit for
 * transient failures, an unknown outcome for a refresh token that may have been rotated, and a broken connector
 * (`invalid_grant` on a refresh token, `invalid_client` anywhere) as needing re-authorization.
 */
export async function recordFailure(
  deps: FailureRecorderDeps,
  connector: Connector,
  lease: Lease,
  error: unknown,
  previous: TokenFailure | undefined,
): Promise<void> {
  // Not asked at all (too little time left): nothing to learn about the server.
  if (!(error instanceof VendorError) || notAsked(error)) return;
  const { clock, log, store } = deps;
  const connectorKey = refKey(connector.ref);
  const isRefreshGrant = connector.document.grantType === 'refresh_token';
  const at = clock.now();
  const consecutive = (previous?.revision === connector.revision ? previous.consecutive : 0) + 1;
  const unconfirmed = isRefreshGrant && outcomeUnknown(error);
  const failure: TokenFailure = {
    at,
    code: error.code,
    upstreamError: error.upstreamError,
    revision: connector.revision,
    consecutive,
    openUntil:
      error.code === 'upstream_unavailable' ? openUntil(at, consecutive, error, () => clock.random()) : undefined,
    nextAttemptAt: scheduledRetryAt(at, consecutive, () => clock.random()),
    unconfirmed,
  };
  if (unconfirmed) {
    // The server may have rotated the token without the vendor seeing the answer. The next exchange presents
    // the same token: a server with a reuse grace period accepts it; a strict one revokes the grant, which no
    // client can prevent (README, "Guarantees").
    log.error('refresh exchange outcome unknown: the server may have rotated the refresh token', {
      connector: connectorKey,
      ...errorFields(error),
    });
  }
  // A refused refresh token or client will not start working by itself: only a new document helps.
  const broken =
    (isRefreshGrant && error.upstreamError === 'invalid_grant') || error.upstreamError === 'invalid_client';
  try {
    const recorded = await store.recordFailure(connectorKey, lease, failure);
    if (!recorded) {
      log.warn('the lease was taken over during the exchange; its failure is not recorded', {
        connector: connectorKey,
      });
    } else if (broken && error.upstreamError !== undefined) {
      await store.markNeedsReauthorization(connectorKey, connector.revision, error.upstreamError);
      log.error('connector needs re-authorization', { connector: connectorKey, upstreamError: error.upstreamError });
    }
  } catch (storeError) {
    log.warn('could not record a token failure', { connector: connectorKey, ...errorFields(storeError) });
  }
}
