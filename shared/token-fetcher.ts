import { randomUUID } from 'node:crypto';
import { type Connector, fingerprint, parseConnector, refKey } from './connector.ts';
import type { ConnectorSource } from './connector-source.ts';
import { VendorError } from './errors.ts';
import type { HttpClient } from './http.ts';
import { errorFields, type Log } from './log.ts';
import { requestToken } from './oauth/token-client.ts';
import type { CachedToken, Lease, TokenFailure, TokenStore } from './token-store.ts';

export interface FetcherSettings {
  /** How long a lease holder may talk to the token server before others may take over. */
  readonly leaseMs: number;
  /** How long a caller waits for another holder's result before answering 503. */
  readonly waitMs: number;
  /** Per-attempt timeout of a token request. */
  readonly attemptTimeoutMs: number;
  /** Everything one fetch may take with retries; kept under `leaseMs` so a live holder never loses its lease. */
  readonly fetchDeadlineMs: number;
  readonly maxAttempts: number;
  /** The minTtl a refresh ahead must keep serving: refreshes start before a token drops below it. */
  readonly defaultMinTtlMs: number;
}

export interface FetcherDeps {
  readonly source: ConnectorSource;
  readonly store: TokenStore;
  readonly http: HttpClient;
  readonly now: () => number;
  readonly random: () => number;
  readonly sleep: (ms: number) => Promise<void>;
  readonly log: Log;
  readonly settings: FetcherSettings;
  /** Identifies this process as a lease holder. */
  readonly owner?: string;
}

/** What one fetch is for: the cache key of a connector and scope set, and the scope to ask for. */
export interface FetchTarget {
  readonly connector: Connector;
  readonly tokenKey: string;
  readonly scope: string | undefined;
}

export interface FetchOptions {
  /** Accept a token from another holder only if it was issued at or after this time (forced refresh). */
  readonly issuedAfter?: number;
  /** Is a stored token good enough for this caller? */
  readonly accept: (token: CachedToken) => boolean;
  /** Refresh ahead: try once, never wait for another holder. */
  readonly background?: boolean;
}

/**
 * Gets a new token from the token server so that, across every process sharing the token table, exactly one
 * caller talks to the server for a connector at a time; the others wait for its result.
 *
 * The lease lives on the connector's state item (one conditional write); its `fence` grows with each grant
 * and guards every write a holder makes, so a holder whose lease ran out cannot overwrite a newer result.
 * All uses of a refresh token go through it, which is what keeps a rotating refresh token chain intact.
 */
export class TokenFetcher {
  readonly #deps: FetcherDeps;
  readonly #owner: string;
  /** In-process single flight: concurrent callers in one process share one lease wait. */
  readonly #inFlight = new Map<string, Promise<CachedToken | undefined>>();
  /** When this process last tried a refresh ahead, per token key. */
  readonly #backgroundTries = new Map<string, number>();
  /**
   * Rotated refresh tokens that neither the table nor the connector store took (both down): the last copy is here,
   * and it is used and written again by the next refresh in this process.
   */
  readonly #unsaved = new Map<string, { refreshToken: string; replaces: string }>();

  constructor(deps: FetcherDeps) {
    this.#deps = deps;
    this.#owner = deps.owner ?? randomUUID();
  }

  async fetch(target: FetchTarget, options: FetchOptions): Promise<CachedToken | undefined> {
    const flightKey = `${target.tokenKey}|${options.issuedAfter ?? ''}|${options.background === true}`;
    const running = this.#inFlight.get(flightKey);
    if (running !== undefined) {
      const token = await running;
      if (token === undefined || options.accept(token)) return token;
    }
    if (options.background === true) {
      // Every request past a token's refresh point asks for a refresh ahead; one try per second per key is enough.
      const last = this.#backgroundTries.get(target.tokenKey) ?? Number.NEGATIVE_INFINITY;
      if (this.#deps.now() - last < BACKGROUND_RETRY_MS) return undefined;
      this.#backgroundTries.set(target.tokenKey, this.#deps.now());
    }
    const flight = this.#fetchAcrossProcesses(target, options).finally(() => this.#inFlight.delete(flightKey));
    this.#inFlight.set(flightKey, flight);
    return flight;
  }

  async #fetchAcrossProcesses(target: FetchTarget, options: FetchOptions): Promise<CachedToken | undefined> {
    const { store, now, sleep, random, settings } = this.#deps;
    const connectorKey = refKey(target.connector.ref);
    const started = now();
    const acceptable = (token: CachedToken | undefined): token is CachedToken =>
      token !== undefined &&
      token.tokenRevision === target.connector.tokenRevision &&
      token.issuedAt >= (options.issuedAfter ?? 0) &&
      options.accept(token);
    let pause = 20;
    for (;;) {
      const lease = await store.acquireLease(connectorKey, this.#owner, now(), settings.leaseMs);
      if (lease !== undefined) {
        try {
          return await this.#fetchAsHolder(target, lease, acceptable, started);
        } finally {
          await store.releaseLease(connectorKey, lease).catch((error: unknown) => {
            // The lease runs out by itself; failing to release it early costs others only a wait.
            this.#deps.log.warn('lease release failed', { connector: connectorKey, ...errorFields(error) });
          });
        }
      }
      if (options.background === true) return undefined;
      const token = await store.getToken(target.tokenKey, now());
      if (acceptable(token)) return token;
      if (now() - started >= settings.waitMs) {
        throw new VendorError('upstream_unavailable', 'Timed out waiting for a token refresh in progress.', {
          retryAfterSeconds: 1,
        });
      }
      await sleep(pause * (0.5 + random()));
      pause = Math.min(pause * 1.5, 250);
    }
  }

  async #fetchAsHolder(
    target: FetchTarget,
    lease: Lease,
    acceptable: (token: CachedToken | undefined) => token is CachedToken,
    started: number,
  ): Promise<CachedToken> {
    const { store, now } = this.#deps;
    const connectorKey = refKey(target.connector.ref);
    // Another holder may have finished between our last read and taking the lease.
    const existing = await store.getToken(target.tokenKey, now());
    if (acceptable(existing)) return existing;

    const state = await store.getState(connectorKey);
    const connector = await this.#currentConnector(target.connector);
    if (state.failure !== undefined && state.failure.at >= started && state.failure.revision === connector.revision) {
      // The holder before us failed while we waited: share its answer rather than multiply load on the server.
      throw failureError(state.failure);
    }
    const openUntil = state.failure?.openUntil;
    if (openUntil !== undefined && openUntil > now() && state.failure?.revision === connector.revision) {
      // Circuit open: the server failed repeatedly; calling it again now would only add load to an outage.
      throw new VendorError('upstream_unavailable', 'The token server keeps failing; the vendor is backing off.', {
        retryAfterSeconds: Math.ceil((openUntil - now()) / 1000),
      });
    }
    const isRefreshGrant = connector.document.grantType === 'refresh_token';
    if (
      isRefreshGrant &&
      state.reauthorization?.revision === connector.revision &&
      state.reauthorization.upstreamError === 'invalid_grant'
    ) {
      throw needsReauthorization(state.reauthorization.upstreamError);
    }
    const refreshToken = isRefreshGrant ? await this.#newestRefreshToken(connector, state.journal) : undefined;

    const issuedAt = now();
    let result: Awaited<ReturnType<typeof requestToken>>;
    try {
      result = await requestToken(
        {
          http: this.#deps.http,
          now,
          sleep: this.#deps.sleep,
          random: this.#deps.random,
          attemptTimeoutMs: this.#deps.settings.attemptTimeoutMs,
          deadlineMs: this.#deps.settings.fetchDeadlineMs,
          maxAttempts: this.#deps.settings.maxAttempts,
        },
        connector.document,
        {
          scope: target.scope,
          refreshToken,
          rememberedAuthMethod: state.authRevision === connector.tokenRevision ? state.authMethod : undefined,
        },
      );
    } catch (error) {
      await this.#recordFailure(connector, error, isRefreshGrant, state.failure);
      throw error;
    }
    // From here on the server has answered: a store failure must not cost the caller the token, and the rotated
    // refresh token, the one thing that cannot be fetched again, is stored first.
    if (isRefreshGrant && refreshToken !== undefined && result.tokens.refreshToken !== undefined) {
      await this.#storeRotatedRefreshToken(connector, lease, refreshToken, result.tokens.refreshToken);
    }
    if (state.failure !== undefined) {
      await this.#bestEffort('clear failure', connectorKey, () => store.clearFailure(connectorKey));
    }
    if (state.authMethod !== result.authMethod || state.authRevision !== connector.tokenRevision) {
      await this.#bestEffort('remember auth method', connectorKey, () =>
        store.rememberAuthMethod(connectorKey, result.authMethod, connector.tokenRevision),
      );
    }
    const token = toCachedToken(result.tokens, target, issuedAt, this.#deps);
    const stored = await this.#bestEffort('cache token', connectorKey, () =>
      store.putToken(target.tokenKey, token, lease.fence),
    );
    if (stored === false) this.#deps.log.warn('a newer holder stored a token first', { connector: connectorKey });
    return token;
  }

  async #bestEffort<T>(what: string, connectorKey: string, write: () => Promise<T>): Promise<T | undefined> {
    try {
      return await write();
    } catch (error) {
      this.#deps.log.error(`${what} failed after the token server answered`, {
        connector: connectorKey,
        ...errorFields(error),
      });
      return undefined;
    }
  }

  /**
   * For a refresh grant, the document as it is now, under the lease: the copy read before waiting may be several
   * rotations old, and its refresh token long used up. Other grants keep the copy they have.
   */
  async #currentConnector(connector: Connector): Promise<Connector> {
    if (connector.document.grantType !== 'refresh_token') return connector;
    const text = await this.#deps.source.read(connector.ref, { fresh: true });
    if (text === undefined) throw new VendorError('access_denied', 'The connector no longer exists.');
    return parseConnector(connector.ref, text);
  }

  /**
   * The refresh token to use: the document's, unless the journal holds a newer one the document has not caught
   * up with (a crash or failed write after rotation), in which case that write is completed first.
   */
  async #newestRefreshToken(connector: Connector, stored: RefreshTokenJournalView | undefined): Promise<string> {
    const documentToken = connector.document.refreshToken ?? '';
    const connectorKey = refKey(connector.ref);
    const unsaved = this.#unsaved.get(connectorKey);
    const journal = unsaved === undefined ? stored : { ...unsaved, written: false };
    if (journal === undefined) return documentToken;
    if (journal.refreshToken === documentToken) {
      if (!journal.written) await this.#deps.store.markJournalWritten(connectorKey, documentToken);
      return documentToken;
    }
    // The document moved on to a token we never issued: an operator re-authorized; theirs wins.
    if (journal.replaces !== fingerprint(documentToken)) return documentToken;
    await this.#writeRefreshToken(connector, journal.refreshToken);
    return journal.refreshToken;
  }

  async #storeRotatedRefreshToken(connector: Connector, lease: Lease, used: string, issued: string): Promise<void> {
    if (issued === used) return;
    const connectorKey = refKey(connector.ref);
    const entry = { refreshToken: issued, replaces: fingerprint(used) };
    // Durable first, in the table, under the lease; only then the slower secret write, which may be retried.
    const journaled = await this.#bestEffort('journal refresh token', connectorKey, () =>
      this.#deps.store.journalRefreshToken(connectorKey, lease, entry),
    );
    if (journaled === false) {
      this.#deps.log.error('refresh token journal refused: a newer holder exists', { connector: connectorKey });
    }
    const written = await this.#writeRefreshToken(connector, issued);
    if (journaled !== true && !written) this.#unsaved.set(connectorKey, entry);
  }

  /** Writes the refresh token into the connector document; false (and logged) when the store refused. */
  async #writeRefreshToken(connector: Connector, refreshToken: string): Promise<boolean> {
    const connectorKey = refKey(connector.ref);
    try {
      await this.#deps.source.writeRefreshToken(connector.ref, refreshToken);
    } catch (error) {
      // The journal keeps the token; the next refresh or scheduled run completes the write.
      this.#deps.log.error('refresh token write to the connector store failed; will retry', {
        connector: connectorKey,
        ...errorFields(error),
      });
      return false;
    }
    this.#unsaved.delete(connectorKey);
    await this.#bestEffort('mark journal written', connectorKey, () =>
      this.#deps.store.markJournalWritten(connectorKey, refreshToken),
    );
    this.#deps.log.info('rotated refresh token stored', { connector: connectorKey });
    return true;
  }

  async #recordFailure(
    connector: Connector,
    error: unknown,
    isRefreshGrant: boolean,
    previous: TokenFailure | undefined,
  ): Promise<void> {
    if (!(error instanceof VendorError)) return;
    const connectorKey = refKey(connector.ref);
    const at = this.#deps.now();
    const consecutive = (previous?.revision === connector.revision ? previous.consecutive : 0) + 1;
    const failure: TokenFailure = {
      at,
      code: error.code,
      upstreamError: error.upstreamError,
      revision: connector.revision,
      consecutive,
      openUntil:
        error.code === 'upstream_unavailable' ? circuitOpenUntil(at, consecutive, this.#deps.random) : undefined,
      nextAttemptAt: scheduledRetryAt(at, consecutive, this.#deps.random),
    };
    // A refused refresh token or client will not start working by itself: only a new document helps.
    const broken =
      (isRefreshGrant && error.upstreamError === 'invalid_grant') || error.upstreamError === 'invalid_client';
    try {
      await this.#deps.store.recordFailure(connectorKey, failure);
      if (broken && error.upstreamError !== undefined) {
        await this.#deps.store.markNeedsReauthorization(connectorKey, connector.revision, error.upstreamError);
        this.#deps.log.error('connector needs re-authorization', {
          connector: connectorKey,
          upstreamError: error.upstreamError,
        });
      }
    } catch (storeError) {
      this.#deps.log.warn('could not record a token failure', { connector: connectorKey, ...errorFields(storeError) });
    }
  }
}

type RefreshTokenJournalView = NonNullable<Awaited<ReturnType<TokenStore['getState']>>['journal']>;

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

const BACKGROUND_RETRY_MS = 1_000;

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
 * When to refresh ahead: at 70–80% (jittered, so containers and connectors spread out) of the time the token can
 * still be served to a caller with the default minTtl.
 */
export function refreshAtFor(
  issuedAt: number,
  expiresAt: number,
  defaultMinTtlMs: number,
  random: () => number,
): number {
  const lifetime = expiresAt - issuedAt;
  const servableUntil = expiresAt - Math.min(defaultMinTtlMs, lifetime / 2);
  return Math.floor(issuedAt + (servableUntil - issuedAt) * (0.7 + 0.1 * random()));
}

function toCachedToken(
  tokens: { accessToken: string; tokenType: string; expiresIn: number; scope: string | undefined },
  target: FetchTarget,
  issuedAt: number,
  deps: FetcherDeps,
): CachedToken {
  const expiresAt = issuedAt + tokens.expiresIn * 1000;
  return {
    accessToken: tokens.accessToken,
    tokenType: tokens.tokenType,
    scope: tokens.scope ?? target.scope,
    issuedAt,
    expiresAt,
    refreshAt: refreshAtFor(issuedAt, expiresAt, deps.settings.defaultMinTtlMs, deps.random),
    tokenRevision: target.connector.tokenRevision,
  };
}
