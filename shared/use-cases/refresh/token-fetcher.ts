import { randomUUID } from 'node:crypto';
import { errorFields, VendorError } from '../../core/errors.ts';
import { refKey, splitScope, tokenKeyOf } from '../../core/identifiers.ts';
import { LruCache } from '../../core/lru.ts';
import { type CachedToken, refreshAtFor, serves, type TokenRequirement } from '../../core/token-policy.ts';
import type { Connector } from '../../domain/connector.ts';
import { requestToken, type TokenResult } from '../../domain/oauth/token-client.ts';
import { DEFAULT_IDLE_REFRESH_MS, nextDueAt } from '../../domain/schedule.ts';
import { profileOf } from '../../domain/vend-profile.ts';
import type { Clock } from '../../ports/clock.ts';
import type { ConnectorSource } from '../../ports/connector-store.ts';
import type { HttpClient } from '../../ports/http.ts';
import type { KmsSigner } from '../../ports/kms-signer.ts';
import type { Log } from '../../ports/log.ts';
import type { ConnectorState, ConnectorStateTable, Lease, TokenCache } from '../../ports/token-table.ts';
import type { Tracing } from '../../ports/tracing.ts';
import { openCircuit, recordFailure, refusalBeforeExchange } from './failures.ts';
import { nextChain, RefreshChainKeeper } from './refresh-chain.ts';

export interface FetcherSettings {
  /** How long a lease holder may talk to the token server before others may take over. */
  readonly leaseMs: number;
  /** How long a caller without a deadline waits for another holder's result before answering 503. */
  readonly waitMs: number;
  /** Per-attempt timeout of a token request, and the least time worth sending one with. */
  readonly attemptTimeoutMs: number;
  /** Everything one fetch may take from taking the lease; kept under `leaseMs` so its result can be stored. */
  readonly fetchDeadlineMs: number;
  readonly maxAttempts: number;
  /** The minTtl a refresh ahead must keep serving: refreshes start before a token drops below it. */
  readonly defaultMinTtlMs: number;
  /** The share of a short-lived token's servable window kept back for its refresh (see refreshAtFor). */
  readonly refreshMarginShare?: number | undefined;
  /** How often the schedule exercises an idle refresh token (its due time after an exchange). */
  readonly idleRefreshMs?: number | undefined;
}

export interface FetcherDeps {
  readonly source: ConnectorSource;
  readonly store: TokenCache & ConnectorStateTable;
  readonly http: HttpClient;
  /** Signs assertions of connectors whose `signingKey` is a KMS key. */
  readonly kms?: KmsSigner | undefined;
  readonly clock: Clock;
  readonly log: Log;
  readonly settings: FetcherSettings;
  /** Traces the token request (X-Ray in AWS). @default none */
  readonly tracing?: Tracing;
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
  /** What a token another holder stored must satisfy to be taken instead of fetching. */
  readonly requirement: TokenRequirement;
  /** Refresh ahead: try once, never wait for another holder. */
  readonly background?: boolean;
  /** Epoch milliseconds by which the caller needs its answer; waits and the exchange end before it. */
  readonly deadline?: number;
}

/** Time kept back after an exchange for the writes that store its result. */
const STORE_RESERVE_MS = 1_000;
/** Longest wait for the connector document under the lease; the chain goes on from the table without it. */
const DOCUMENT_READ_MS = 2_000;
/** Every request past a token's refresh point asks for a refresh ahead; one try per second per key is enough. */
const BACKGROUND_RETRY_MS = 1_000;

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
  readonly #chains: RefreshChainKeeper;
  /** In-process single flight: concurrent callers in one process share one lease wait. */
  readonly #inFlight = new Map<string, Promise<CachedToken | undefined>>();
  /** When this process last tried a refresh ahead, per token key. */
  readonly #backgroundTries = new LruCache<string, number>(10_000);

  constructor(deps: FetcherDeps) {
    this.#deps = deps;
    this.#owner = deps.owner ?? randomUUID();
    this.#chains = new RefreshChainKeeper(deps);
  }

  /** The refresh-token chains this fetcher keeps (the schedule checkpoints documents left behind through it). */
  get chains(): RefreshChainKeeper {
    return this.#chains;
  }

  async fetch(target: FetchTarget, options: FetchOptions): Promise<CachedToken | undefined> {
    const { clock } = this.#deps;
    const flightKey = `${target.tokenKey}|${options.requirement.issuedAfter ?? ''}|${options.background === true}`;
    const running = this.#inFlight.get(flightKey);
    if (running !== undefined) {
      const token = await running;
      if (token === undefined || serves(token, options.requirement, clock.now())) return token;
    }
    if (options.background === true) {
      const last = this.#backgroundTries.get(target.tokenKey) ?? Number.NEGATIVE_INFINITY;
      if (clock.now() - last < BACKGROUND_RETRY_MS) return undefined;
      this.#backgroundTries.set(target.tokenKey, clock.now());
    }
    const flight = this.#fetchAcrossProcesses(target, options).finally(() => this.#inFlight.delete(flightKey));
    this.#inFlight.set(flightKey, flight);
    return flight;
  }

  /**
   * Reads before it leases: a token someone stored, or a live lease, means there is nothing to take. Only a
   * caller that finds neither writes (the lease), so a hot connector costs one lease write per refresh, not one
   * per container. Waiters poll the table until the holder's lease ends or their deadline comes.
   */
  async #fetchAcrossProcesses(target: FetchTarget, options: FetchOptions): Promise<CachedToken | undefined> {
    const { store, clock, settings } = this.#deps;
    const connectorKey = refKey(target.connector.ref);
    const started = clock.now();
    const deadline = options.deadline ?? started + settings.waitMs;
    const acceptable = (token: CachedToken | undefined): token is CachedToken =>
      token !== undefined && serves(token, options.requirement, clock.now());
    let pause = 20;
    for (;;) {
      // State first, then the token: a holder publishes its token before it frees the lease, so a free lease seen
      // here means the token read next is the newest.
      const state = await store.getState(connectorKey);
      const head = headFor(state, target.tokenKey);
      if (acceptable(head)) return head;
      // An open circuit (repeated failures, or the server's Retry-After) is answered without taking the lease.
      const open = openCircuit(state, target.connector, clock.now());
      if (open !== undefined) throw open;
      let holder = state.lease !== undefined && state.lease.until > clock.now() ? state.lease : undefined;
      if (holder === undefined) {
        const stored = await store.getToken(target.tokenKey, clock.now());
        if (acceptable(stored)) return stored;
        const takenAt = clock.now();
        const attempt = await store.acquireLease(connectorKey, this.#owner, takenAt, settings.leaseMs);
        if ('lease' in attempt) {
          return this.#fetchAsHolder(target, attempt.lease, acceptable, { started, takenAt, deadline });
        }
        holder = attempt.heldBy;
      }
      if (options.background === true) return undefined;
      const left = deadline - clock.now();
      if (left <= 0) {
        throw new VendorError('upstream_unavailable', 'Timed out waiting for a token refresh in progress.', {
          retryAfterSeconds: 1,
        });
      }
      // Poll for the holder's result, but never past its lease (then it is free to take) or the deadline.
      const untilFree = holder === undefined ? 0 : holder.until - clock.now();
      await clock.sleep(Math.max(1, Math.min(pause * (0.5 + clock.random()), left, Math.max(untilFree, 1))));
      pause = Math.min(pause * 1.5, 250);
    }
  }

  async #fetchAsHolder(
    target: FetchTarget,
    lease: Lease,
    acceptable: (token: CachedToken | undefined) => token is CachedToken,
    times: { readonly started: number; readonly takenAt: number; readonly deadline: number },
  ): Promise<CachedToken> {
    const { store, clock, settings, log } = this.#deps;
    const connectorKey = refKey(target.connector.ref);
    let released = false;
    try {
      // Every step under the lease counts against it: the exchange ends in time for its result to be stored.
      const exchangeBy = Math.min(times.takenAt + settings.fetchDeadlineMs, times.deadline - STORE_RESERVE_MS);
      // Another holder may have finished between our last reads and taking the lease.
      const [state, stored] = await Promise.all([
        store.getState(connectorKey),
        store.getToken(target.tokenKey, clock.now()),
      ]);
      const head = headFor(state, target.tokenKey);
      if (acceptable(head)) return head;
      if (acceptable(stored)) return stored;

      const isRefreshGrant = target.connector.document.grantType === 'refresh_token';
      const documentBudget = Math.min(DOCUMENT_READ_MS, exchangeBy - clock.now() - settings.attemptTimeoutMs);
      const connector = isRefreshGrant
        ? await this.#chains.currentDocument(target.connector, state, documentBudget)
        : target.connector;
      const refusal = refusalBeforeExchange(state, connector, times.started, clock.now());
      if (refusal !== undefined) throw refusal;
      const chain = isRefreshGrant ? this.#chains.toContinue(connector, state.chain) : undefined;

      const issuedAt = clock.now();
      let result: TokenResult;
      const exchange = () =>
        requestToken(
          {
            http: this.#deps.http,
            kms: this.#deps.kms,
            clock,
            attemptTimeoutMs: settings.attemptTimeoutMs,
            maxAttempts: settings.maxAttempts,
            deadlineMs: exchangeBy - clock.now(),
          },
          connector.document,
          {
            scope: target.scope,
            refreshToken: chain?.refreshToken,
            rememberedAuthMethod: state.authRevision === connector.tokenRevision ? state.authMethod : undefined,
          },
        );
      try {
        // The span names the connector and its grant; the request's URL, body and answer stay out of the trace.
        const annotations = { connector: connectorKey, grantType: connector.document.grantType };
        result = await (this.#deps.tracing?.span('token request', annotations, exchange) ?? exchange());
      } catch (error) {
        await recordFailure(this.#deps, connector, lease, error, state.failure);
        throw error;
      }
      const token = this.#toCachedToken(result, target, issuedAt);
      this.#noteBroaderScope(target, result.tokens.scope);
      const next = chain === undefined ? undefined : nextChain(chain, result.tokens.refreshToken, state.chain);
      // The profile a vend served from the cache is authorized and answered by: from the document just used.
      const profile = profileOf(connector);
      if (next === undefined) {
        // Other grants publish before freeing the lease, so whoever finds it free finds this token too.
        await this.#bestEffort('cache token', connectorKey, () =>
          store.putToken(target.tokenKey, token, lease.fence, profile),
        );
      }
      // A refresh grant's one write stores what the server answered, under the lease: the refresh token, which
      // cannot be fetched again, goes nowhere else first, and its access token is published with it.
      const completed = await this.#bestEffort('store the exchange', connectorKey, () =>
        store.completeExchange(connectorKey, lease, {
          tokenKey: target.tokenKey,
          // The schedule's next look at it, for the connector's own token (scoped ones are vends' business).
          dueAt:
            target.tokenKey === tokenKeyOf(connectorKey)
              ? nextDueAt(connector.document, token, settings.idleRefreshMs ?? DEFAULT_IDLE_REFRESH_MS)
              : undefined,
          authMethod: result.authMethod,
          authRevision: connector.tokenRevision,
          chain: next,
          head: next === undefined ? undefined : { tokenKey: target.tokenKey, token },
        }),
      );
      if (completed === false) {
        // A newer holder took the lease while this exchange ran: its chain is the one that counts.
        log.error('the lease was taken over during the exchange; its result is not stored', {
          connector: connectorKey,
        });
        return token;
      }
      if (completed === undefined) {
        if (next !== undefined && next.refreshToken !== chain?.refreshToken) {
          await this.#chains.keepUnsaved(connector, next);
        }
        return token;
      }
      released = true;
      if (next === undefined) return token;
      this.#chains.stored(connectorKey);
      await this.#bestEffort('cache token', connectorKey, () =>
        store.putToken(target.tokenKey, token, lease.fence, profile),
      );
      await this.#chains.checkpoint(connector, next);
      return token;
    } finally {
      if (!released) {
        await store.releaseLease(connectorKey, lease).catch((error: unknown) => {
          // The lease runs out by itself; failing to release it early costs others only a wait.
          log.warn('lease release failed', { connector: connectorKey, ...errorFields(error) });
        });
      }
    }
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
   * A server that grants more than was asked is told to callers (the token's `scope`) and to operators here
   * (RFC 6749 §3.3: the granted scope is the server's to decide, and it must say so when it differs).
   */
  #noteBroaderScope(target: FetchTarget, granted: string | undefined): void {
    if (granted === undefined || target.scope === undefined) return;
    const requested = new Set(splitScope(target.scope));
    const extra = splitScope(granted).filter((scope) => !requested.has(scope));
    if (extra.length === 0) return;
    this.#deps.log.warn('the token server granted more scope than was asked', {
      connector: refKey(target.connector.ref),
      requestedScope: target.scope,
      grantedScope: granted,
    });
  }

  #toCachedToken(result: TokenResult, target: FetchTarget, issuedAt: number): CachedToken {
    const { tokens } = result;
    const expiresAt = issuedAt + tokens.expiresIn * 1000;
    return {
      accessToken: tokens.accessToken,
      tokenType: tokens.tokenType,
      scope: tokens.scope ?? target.scope,
      issuedAt,
      expiresAt,
      refreshAt: refreshAtFor(
        issuedAt,
        expiresAt,
        this.#deps.settings.defaultMinTtlMs,
        () => this.#deps.clock.random(),
        {
          marginShare: this.#deps.settings.refreshMarginShare,
          fetchMs: this.#deps.clock.now() - issuedAt,
        },
      ),
      tokenRevision: target.connector.tokenRevision,
    };
  }
}

/** The access token stored on the state item with the refresh token, when it is for this key. */
function headFor(state: ConnectorState, tokenKey: string): CachedToken | undefined {
  return state.head?.tokenKey === tokenKey ? state.head.token : undefined;
}
