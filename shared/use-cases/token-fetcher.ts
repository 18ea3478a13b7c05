import { randomUUID } from 'node:crypto';
import type { HttpClient } from '../adapters/http-client.ts';
import { misconfigured, VendorError } from '../core/errors.ts';
import { refKey } from '../core/identifiers.ts';
import type { CachedToken } from '../core/token-policy.ts';
import { refreshAtFor } from '../core/token-policy.ts';
import { type Connector, fingerprint, parseConnector } from '../domain/connector.ts';
import { within } from '../domain/deadline.ts';
import { notAsked, outcomeUnknown, requestToken } from '../domain/oauth/token-client.ts';
import type { ConnectorSource } from '../ports/connector-store.ts';
import { errorFields, type Log } from '../ports/log.ts';
import type { ConnectorState, Lease, RefreshChain, TokenFailure, TokenStore } from '../ports/token-table.ts';

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
  /** Epoch milliseconds by which the caller needs its answer; waits and the exchange end before it. */
  readonly deadline?: number;
}

/** Time kept back after an exchange for the writes that store its result. */
const STORE_RESERVE_MS = 1_000;
/** Longest wait for the connector document under the lease; the chain goes on from the table without it. */
const DOCUMENT_READ_MS = 2_000;
/** Fingerprints of held refresh tokens kept in the chain, to tell a document that is behind from a new one. */
const HELD_FINGERPRINTS = 16;

/** A chain this process holds in memory alone, because neither the table nor the document took it. */
interface UnsavedChain {
  readonly chain: RefreshChain;
}

/**
 * Gets a new token from the token server so that, across every process sharing the token table, exactly one
 * caller talks to the server for a connector at a time; the others wait for its result.
 *
 * The lease lives on the connector's state item (one conditional write); its `fence` grows with each grant.
 * A refresh grant's exchange ends with one write, conditional on the fence, that stores the new refresh token
 * and access token together: a holder whose lease was taken stores and publishes nothing. The table is the home
 * of the live refresh token; the connector document is its seed and a checkpoint (CONTRACT §2).
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
  readonly #unsaved = new Map<string, UnsavedChain>();

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

  /**
   * Reads before it leases: a token someone stored, or a live lease, means there is nothing to take. Only a
   * caller that finds neither writes (the lease), so a hot connector costs one conditional write per refresh, not
   * one per container. Waiters poll the table until the holder's lease ends or their deadline comes.
   */
  async #fetchAcrossProcesses(target: FetchTarget, options: FetchOptions): Promise<CachedToken | undefined> {
    const { store, now, sleep, random, settings } = this.#deps;
    const connectorKey = refKey(target.connector.ref);
    const started = now();
    const deadline = options.deadline ?? started + settings.waitMs;
    const acceptable = (token: CachedToken | undefined): token is CachedToken =>
      token !== undefined &&
      token.tokenRevision === target.connector.tokenRevision &&
      token.issuedAt >= (options.issuedAfter ?? 0) &&
      options.accept(token);
    let pause = 20;
    for (;;) {
      // State first, then the token: a holder publishes its token before it frees the lease, so a free lease seen
      // here means the token read next is the newest.
      const state = await store.getState(connectorKey);
      const head = headFor(state, target.tokenKey);
      if (acceptable(head)) return head;
      let holder = state.lease !== undefined && state.lease.until > now() ? state.lease : undefined;
      if (holder === undefined) {
        const stored = await store.getToken(target.tokenKey, now());
        if (acceptable(stored)) return stored;
        const takenAt = now();
        const attempt = await store.acquireLease(connectorKey, this.#owner, takenAt, settings.leaseMs);
        if ('lease' in attempt) {
          return this.#fetchAsHolder(target, attempt.lease, acceptable, { started, takenAt, deadline });
        }
        holder = attempt.heldBy;
      }
      if (options.background === true) return undefined;
      const left = deadline - now();
      if (left <= 0) {
        throw new VendorError('upstream_unavailable', 'Timed out waiting for a token refresh in progress.', {
          retryAfterSeconds: 1,
        });
      }
      // Poll for the holder's result, but never past its lease (then it is free to take) or the deadline.
      const untilFree = holder === undefined ? 0 : holder.until - now();
      await sleep(Math.max(1, Math.min(pause * (0.5 + random()), left, Math.max(untilFree, 1))));
      pause = Math.min(pause * 1.5, 250);
    }
  }

  async #fetchAsHolder(
    target: FetchTarget,
    lease: Lease,
    acceptable: (token: CachedToken | undefined) => token is CachedToken,
    times: { readonly started: number; readonly takenAt: number; readonly deadline: number },
  ): Promise<CachedToken> {
    const { store, now, settings } = this.#deps;
    const connectorKey = refKey(target.connector.ref);
    let completed = false;
    try {
      // Every step under the lease counts against it: the exchange ends in time for its result to be stored.
      const exchangeBy = Math.min(times.takenAt + settings.fetchDeadlineMs, times.deadline - STORE_RESERVE_MS);
      // Another holder may have finished between our last reads and taking the lease.
      const [state, stored] = await Promise.all([store.getState(connectorKey), store.getToken(target.tokenKey, now())]);
      const head = headFor(state, target.tokenKey);
      if (acceptable(head)) return head;
      if (acceptable(stored)) return stored;

      const connector = await this.#currentConnector(target.connector, state, exchangeBy);
      if (
        state.failure !== undefined &&
        state.failure.at >= times.started &&
        state.failure.revision === connector.revision
      ) {
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
      const chain = isRefreshGrant ? this.#chainToContinue(connector, state.chain) : undefined;

      const issuedAt = now();
      let result: Awaited<ReturnType<typeof requestToken>>;
      try {
        result = await requestToken(
          {
            http: this.#deps.http,
            now,
            sleep: this.#deps.sleep,
            random: this.#deps.random,
            attemptTimeoutMs: settings.attemptTimeoutMs,
            deadlineMs: exchangeBy - now(),
            maxAttempts: settings.maxAttempts,
          },
          connector.document,
          {
            scope: target.scope,
            refreshToken: chain?.refreshToken,
            rememberedAuthMethod: state.authRevision === connector.tokenRevision ? state.authMethod : undefined,
          },
        );
      } catch (error) {
        await this.#recordFailure(connector, lease, error, isRefreshGrant, state.failure);
        throw error;
      }
      const token = toCachedToken(result.tokens, target, issuedAt, this.#deps);
      const next = chain === undefined ? undefined : nextChain(chain, result.tokens.refreshToken, state.chain);
      if (next === undefined) {
        // Other grants publish before freeing the lease, so whoever finds it free finds this token too.
        await this.#bestEffort('cache token', connectorKey, () => store.putToken(target.tokenKey, token, lease.fence));
      }
      // A refresh grant's one write stores what the server answered, under the lease: the refresh token, which
      // cannot be fetched again, goes nowhere else first, and its access token is published with it.
      let completedExchange: boolean | undefined;
      try {
        completedExchange = await store.completeExchange(connectorKey, lease, {
          authMethod: result.authMethod,
          authRevision: connector.tokenRevision,
          chain: next,
          head: next === undefined ? undefined : { tokenKey: target.tokenKey, token },
        });
      } catch (error) {
        this.#deps.log.error('storing the exchange failed after the token server answered', {
          connector: connectorKey,
          ...errorFields(error),
        });
      }
      if (completedExchange === false) {
        // A newer holder took the lease while this exchange ran: its chain is the one that counts.
        this.#deps.log.error('the lease was taken over during the exchange; its result is not stored', {
          connector: connectorKey,
        });
        return token;
      }
      if (completedExchange === undefined) {
        if (next !== undefined && next.refreshToken !== chain?.refreshToken) await this.#keepUnsaved(connector, next);
        return token;
      }
      completed = true;
      if (next === undefined) return token;
      this.#unsaved.delete(connectorKey);
      await this.#bestEffort('cache token', connectorKey, () => store.putToken(target.tokenKey, token, lease.fence));
      await this.checkpoint(connector, next);
      return token;
    } finally {
      if (!completed) {
        await store.releaseLease(connectorKey, lease).catch((error: unknown) => {
          // The lease runs out by itself; failing to release it early costs others only a wait.
          this.#deps.log.warn('lease release failed', { connector: connectorKey, ...errorFields(error) });
        });
      }
    }
  }

  /**
   * Writes the chain's refresh token back into the connector document when the source's checkpoint interval has
   * passed (at once for files; Secrets Manager at most every 10 minutes), never over a refresh token the vendor
   * never held (an operator's re-authorization). The scheduled run calls it too, to catch up a document left
   * behind. A failure here costs nothing: the table holds the chain.
   */
  async checkpoint(connector: Connector, chain: RefreshChain): Promise<'written' | 'current' | 'deferred' | 'refused'> {
    const { source, store, now } = this.#deps;
    const connectorKey = refKey(connector.ref);
    if (connector.document.refreshToken === chain.refreshToken) return 'current';
    if (chain.checkpointAt !== undefined && now() - chain.checkpointAt < source.checkpointIntervalMs) return 'deferred';
    const result = await this.#writeDocument(connector, chain);
    if (result === 'written') {
      await this.#bestEffort('record checkpoint', connectorKey, () =>
        store.recordCheckpoint(connectorKey, now(), fingerprint(chain.refreshToken)),
      );
    }
    return result ?? 'deferred';
  }

  async #writeDocument(connector: Connector, chain: RefreshChain): Promise<'written' | 'refused' | undefined> {
    const connectorKey = refKey(connector.ref);
    try {
      const result = await this.#deps.source.writeRefreshToken(connector.ref, chain.refreshToken, (current) =>
        isHeld(chain, current),
      );
      if (result === 'refused') {
        this.#deps.log.warn('the connector document holds a refresh token the vendor never held; left as it is', {
          connector: connectorKey,
        });
      } else {
        this.#deps.log.info('refresh token checkpointed to the connector document', { connector: connectorKey });
      }
      return result;
    } catch (error) {
      this.#deps.log.warn('refresh token checkpoint to the connector store failed; the table keeps the chain', {
        connector: connectorKey,
        ...errorFields(error),
      });
      return undefined;
    }
  }

  /**
   * The table refused the exchange's result (down, not fenced out): the document takes the new refresh token at
   * once, whatever the checkpoint interval, and this process keeps it too. A document value the table never held
   * is what the next holder, anywhere, continues from.
   */
  async #keepUnsaved(connector: Connector, chain: RefreshChain): Promise<void> {
    this.#unsaved.set(refKey(connector.ref), { chain });
    await this.#writeDocument(connector, chain);
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
   * For a refresh grant, the document as it is now, under the lease: an operator may have re-authorized. When the
   * connector store is down or slow, the copy in hand will do: the table holds the chain. Other grants keep the
   * copy they have.
   */
  async #currentConnector(connector: Connector, state: ConnectorState, exchangeBy: number): Promise<Connector> {
    if (connector.document.grantType !== 'refresh_token') return connector;
    const budget = Math.min(DOCUMENT_READ_MS, exchangeBy - this.#deps.now() - this.#deps.settings.attemptTimeoutMs);
    let text: string | undefined;
    try {
      text = await within(this.#deps.source.read(connector.ref, { fresh: true }), budget, 'The connector store');
    } catch (error) {
      if (state.chain === undefined) throw error;
      this.#deps.log.warn('the connector store is unavailable; the chain continues from the table', {
        connector: refKey(connector.ref),
        ...errorFields(error),
      });
      return connector;
    }
    if (text === undefined) throw new VendorError('access_denied', 'The connector no longer exists.');
    return parseConnector(connector.ref, text);
  }

  /**
   * The refresh token to present: the table's chain (or this process's unsaved copy of it), unless the document
   * holds one the vendor never held, which is an operator's re-authorization; the chain continues from that.
   */
  #chainToContinue(connector: Connector, stored: RefreshChain | undefined): RefreshChain {
    const connectorKey = refKey(connector.ref);
    const unsaved = this.#unsaved.get(connectorKey)?.chain;
    // The memory copy is newer only while the table is still at one of its ancestors.
    const usable =
      unsaved !== undefined && (stored === undefined || isHeld(unsaved, stored.refreshToken))
        ? { ...unsaved, checkpointed: stored?.checkpointed ?? unsaved.checkpointed }
        : stored;
    if (unsaved !== undefined && usable === stored) this.#unsaved.delete(connectorKey);
    const documentToken = connector.document.refreshToken;
    if (usable === undefined || (documentToken !== undefined && !isHeld(usable, documentToken))) {
      if (usable !== undefined) {
        this.#deps.log.info('the connector document holds a new refresh token; the chain continues from it', {
          connector: connectorKey,
        });
      }
      if (documentToken === undefined) throw misconfigured('refreshToken', 'is required');
      const seed = fingerprint(documentToken);
      return { refreshToken: documentToken, held: [seed], checkpointAt: usable?.checkpointAt, checkpointed: seed };
    }
    return usable;
  }

  async #recordFailure(
    connector: Connector,
    lease: Lease,
    error: unknown,
    isRefreshGrant: boolean,
    previous: TokenFailure | undefined,
  ): Promise<void> {
    if (!(error instanceof VendorError)) return;
    // Not asked at all (too little time left): nothing to learn about the server.
    if (notAsked(error)) return;
    const connectorKey = refKey(connector.ref);
    const at = this.#deps.now();
    const consecutive = (previous?.revision === connector.revision ? previous.consecutive : 0) + 1;
    const unconfirmed = isRefreshGrant && outcomeUnknown(error);
    const failure: TokenFailure = {
      at,
      code: error.code,
      upstreamError: error.upstreamError,
      revision: connector.revision,
      consecutive,
      openUntil:
        error.code === 'upstream_unavailable' ? circuitOpenUntil(at, consecutive, this.#deps.random) : undefined,
      nextAttemptAt: scheduledRetryAt(at, consecutive, this.#deps.random),
      unconfirmed,
    };
    if (unconfirmed) {
      // The server may have rotated the token without the vendor seeing the answer. The next exchange presents
      // the same token: a server with a reuse grace period accepts it; a strict one revokes the grant, which no
      // client can prevent (README, "Guarantees").
      this.#deps.log.error('refresh exchange outcome unknown: the server may have rotated the refresh token', {
        connector: connectorKey,
        ...errorFields(error),
      });
    }
    // A refused refresh token or client will not start working by itself: only a new document helps.
    const broken =
      (isRefreshGrant && error.upstreamError === 'invalid_grant') || error.upstreamError === 'invalid_client';
    try {
      const recorded = await this.#deps.store.recordFailure(connectorKey, lease, failure);
      if (!recorded) {
        this.#deps.log.warn('the lease was taken over during the exchange; its failure is not recorded', {
          connector: connectorKey,
        });
      } else if (broken && error.upstreamError !== undefined) {
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

/** The access token on the state item, when it is for this key and has not expired. */
function headFor(state: ConnectorState, tokenKey: string): CachedToken | undefined {
  return state.head?.tokenKey === tokenKey ? state.head.token : undefined;
}

/** Is `refreshToken` the chain's own or one it held before (so a document holding it is merely behind)? */
function isHeld(chain: RefreshChain, refreshToken: string | undefined): boolean {
  if (refreshToken === undefined || refreshToken === chain.refreshToken) return true;
  const print = fingerprint(refreshToken);
  return print === chain.checkpointed || chain.held.includes(print);
}

/**
 * The chain after an exchange: the issued refresh token, or the presented one when the server did not rotate. Its
 * `checkpointed` stays as the table has it, unless the chain was seeded from the document just now.
 */
function nextChain(chain: RefreshChain, issued: string | undefined, stored: RefreshChain | undefined): RefreshChain {
  const refreshToken = issued ?? chain.refreshToken;
  const held = [fingerprint(refreshToken), fingerprint(chain.refreshToken), ...chain.held];
  const seeded = chain.checkpointed !== stored?.checkpointed;
  return {
    refreshToken,
    held: [...new Set(held)].slice(0, HELD_FINGERPRINTS),
    checkpointAt: chain.checkpointAt,
    checkpointed: seeded ? chain.checkpointed : undefined,
  };
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
