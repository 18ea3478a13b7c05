import type { CachedToken } from '../core/token-policy.ts';
import type { ClientAuthMethod } from '../domain/oauth/client-auth.ts';
import type { VendProfile } from '../domain/vend-profile.ts';

/**
 * A refresh-token connector's chain as the vendor holds it: the table, not the connector document, is the home of
 * the live refresh token (the document is its seed and a checkpoint).
 */
export interface RefreshChain {
  /** The refresh token to present next. */
  readonly refreshToken: string;
  /**
   * Fingerprints of refresh tokens the vendor has held, newest first (bounded). A document value among them is
   * merely behind; one that is not is an operator's re-authorization.
   */
  readonly held: readonly string[];
  /** When the vendor last wrote the chain back to the connector document. */
  readonly checkpointAt?: number | undefined;
  /**
   * Fingerprint of the refresh token the document held when the vendor last wrote or first read it. A document
   * still holding it is behind, however many rotations ago that was; anything else it holds that the vendor never
   * held is an operator's.
   */
  readonly checkpointed?: string | undefined;
}

/** The access token an exchange produced, stored with the refresh token in the same write. */
export interface HeadToken {
  readonly tokenKey: string;
  readonly token: CachedToken;
}

export interface ConnectorState {
  /** The client authentication that worked, valid while `authRevision` is the connector's tokenRevision. */
  readonly authMethod?: ClientAuthMethod | undefined;
  readonly authRevision?: string | undefined;
  readonly chain?: RefreshChain | undefined;
  readonly head?: HeadToken | undefined;
  /** The lease as last written; free when `until` has passed. */
  readonly lease?: LeaseView | undefined;
  /** Set after `invalid_grant`: the document revision it happened with and the server's code. */
  readonly reauthorization?: { readonly revision: string; readonly upstreamError: string } | undefined;
  /** The last failed token request, so callers who waited on it share its answer instead of repeating it. */
  readonly failure?: TokenFailure | undefined;
  /** Every token key an exchange has cached for this connector (its scope sets): what a sync rewrites. */
  readonly tokenKeys?: readonly string[] | undefined;
}

export interface TokenFailure {
  readonly at: number;
  readonly code: string;
  readonly upstreamError?: string | undefined;
  /** {@link Connector.revision} it happened with: a changed document starts afresh. */
  readonly revision: string;
  /** Failures in a row, for backoff. */
  readonly consecutive: number;
  /** While in the future, the circuit is open: nobody calls the token server for this connector. */
  readonly openUntil?: number | undefined;
  /** Before this, the schedule leaves the connector alone (its slower backoff). */
  readonly nextAttemptAt?: number | undefined;
  /**
   * A refresh token was presented and no answer came back (timeout, reset, 5xx): whether the server rotated it is
   * unknown. The next exchange presents the same token, the only one the vendor has.
   */
  readonly unconfirmed?: boolean | undefined;
}

/** Who holds a connector's lease, and until when. */
export interface LeaseView {
  readonly owner: string;
  readonly until: number;
}

/** The right to talk to the token server for one connector. `fence` grows with every grant of the lease. */
export interface Lease extends LeaseView {
  readonly fence: number;
}

/** A lease request's answer: the lease, or who holds it (read from the refused write, as DynamoDB returns it). */
export type LeaseAttempt = { readonly lease: Lease } | { readonly heldBy: LeaseView | undefined };

/** Everything a successful exchange leaves behind, written at once under the lease. */
export interface ExchangeOutcome {
  /** The token key the exchange was for, remembered on the state item so that a sync finds every cached token. */
  readonly tokenKey: string;
  readonly authMethod: ClientAuthMethod;
  readonly authRevision: string;
  /** The chain after the exchange (refresh grant only); its `checkpointed` is written only when set (a new seed). */
  readonly chain?: RefreshChain | undefined;
  /** Refresh grant only: the access token stored in the same write as the refresh token it came with. */
  readonly head?: HeadToken | undefined;
  /** For a connector the schedule keeps fresh: when it should next look at it (the due index). */
  readonly dueAt?: number | undefined;
}

/** A token item as the hit path reads it: the token, if it is still valid, and the connector's profile. */
export interface TokenEntry {
  readonly token?: CachedToken | undefined;
  readonly profile?: VendProfile | undefined;
}

/** Cached tokens, one item per connector and scope set: what the hit path reads. */
export interface TokenCache {
  /**
   * The cached token, or undefined when absent or expired (DynamoDB deletes expired items only lazily). A strongly
   * consistent read: what a lease holder decides on.
   */
  getToken(key: string, now: number): Promise<CachedToken | undefined>;
  /**
   * The token item for the hit path: an eventually consistent read (half the cost; a token is immutable and a copy
   * a second old serves the same), with the profile a vend is authorized and answered by.
   */
  readEntry(key: string, now: number): Promise<TokenEntry>;
  /** Writes a token and its connector's profile unless a holder with a newer fence already did; false when refused. */
  putToken(key: string, token: CachedToken, fence: number, profile: VendProfile): Promise<boolean>;
  /** Rewrites the profile beside a cached token (a sync after the document changed); nothing when there is no item. */
  setProfile(key: string, profile: VendProfile): Promise<void>;
  /** Discards a cached token: its item, and the copy on the state item if the last exchange stored it there. */
  deleteToken(key: string): Promise<void>;
}

/**
 * Each connector's state: the lease that makes one exchange at a time, the refresh-token chain, the remembered client
 * authentication and the last failure, each changed by one single-item conditional write.
 */
export interface ConnectorStateTable {
  /** The connector's state; `secrets: false` leaves out the (sealed) refresh token and access token. */
  getState(connectorKey: string, options?: { readonly secrets?: boolean }): Promise<ConnectorState>;
  /** Takes the lease when it is free or expired; otherwise says who holds it. */
  acquireLease(connectorKey: string, owner: string, now: number, durationMs: number): Promise<LeaseAttempt>;
  releaseLease(connectorKey: string, lease: Lease): Promise<void>;
  /**
   * Ends an exchange in one conditional write: the chain, the access token, the auth method, no failure, and the
   * lease released, applied only while `lease` is still the current one. False when a newer holder took it: then
   * nothing was written and the caller must publish nothing.
   */
  completeExchange(connectorKey: string, lease: Lease, outcome: ExchangeOutcome): Promise<boolean>;
  /**
   * Claims the right to write the chain back into the connector document, at most once per `intervalMs` across every
   * container (one conditional write); false when someone claimed it more recently.
   */
  claimCheckpoint(connectorKey: string, now: number, intervalMs: number): Promise<boolean>;
  /** Notes that the connector document now holds the refresh token with this fingerprint. */
  recordCheckpoint(connectorKey: string, at: number, checkpointed: string): Promise<void>;
  /** Records a failed exchange, only while `lease` is the current one (a stale holder's news is old); false if not. */
  recordFailure(connectorKey: string, lease: Lease, failure: TokenFailure): Promise<boolean>;
  markNeedsReauthorization(connectorKey: string, revision: string, upstreamError: string): Promise<void>;
  /** Connectors the schedule should look at by `now`, oldest due first, at most `limit` (the due index). */
  listDue(now: number, limit: number): Promise<string[]>;
  /** When the schedule should next look at a connector; undefined takes it off the schedule. */
  setDue(connectorKey: string, dueAt: number | undefined): Promise<void>;
}

/** The spacing of forced refreshes per connector (CONTRACT §3). */
export interface ForcedRefreshSlots {
  /**
   * Claims the connector's forced-refresh slot; undefined when granted, else the milliseconds until the next one.
   */
  takeForcedRefreshSlot(connectorKey: string, now: number, spacingMs: number): Promise<number | undefined>;
}

/** The whole token table, as its adapters implement it; each use case asks for only the parts it uses. */
export type TokenStore = TokenCache & ConnectorStateTable & ForcedRefreshSlots;
