import type { ClientAuthMethod } from './oauth/client-auth.ts';

/** A cached access token. Times are epoch milliseconds. */
export interface CachedToken {
  readonly accessToken: string;
  readonly tokenType: string;
  readonly scope: string | undefined;
  readonly issuedAt: number;
  readonly expiresAt: number;
  /** When a refresh ahead of expiry should start (a jittered share of the lifetime). */
  readonly refreshAt: number;
  /** {@link Connector.tokenRevision} of the settings the token was fetched with. */
  readonly tokenRevision: string;
}

/** A refresh token the server issued, stored under the lease before anyone sees its access token. */
export interface RefreshTokenJournal {
  readonly refreshToken: string;
  /** Fingerprint of the refresh token it replaced, to tell whether the connector document is behind it. */
  readonly replaces: string;
  /** True once the connector document (secret or file) holds it too. */
  readonly written: boolean;
}

export interface ConnectorState {
  /** The client authentication that worked, valid while `authRevision` is the connector's tokenRevision. */
  readonly authMethod?: ClientAuthMethod | undefined;
  readonly authRevision?: string | undefined;
  readonly journal?: RefreshTokenJournal | undefined;
  /** Set after `invalid_grant`: the document revision it happened with and the server's code. */
  readonly reauthorization?: { readonly revision: string; readonly upstreamError: string } | undefined;
  /** The last failed token request, so callers who waited on it share its answer instead of repeating it. */
  readonly failure?: TokenFailure | undefined;
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
}

/** The right to talk to the token server for one connector. `fence` grows with every grant of the lease. */
export interface Lease {
  readonly owner: string;
  readonly fence: number;
  readonly until: number;
}

/**
 * The token table: cached tokens (one item per connector and scope set) and per-connector state (lease,
 * refresh-token journal, remembered auth method), each in single-item conditional writes.
 */
export interface TokenStore {
  /** The cached token, or undefined when absent or expired (DynamoDB deletes expired items only lazily). */
  getToken(key: string, now: number): Promise<CachedToken | undefined>;
  /** Writes a token unless a holder with a newer fence already did; false when refused. */
  putToken(key: string, token: CachedToken, fence: number): Promise<boolean>;
  deleteToken(key: string): Promise<void>;
  getState(connectorKey: string): Promise<ConnectorState>;
  /** Takes the lease when it is free or expired; undefined when another holder has it. */
  acquireLease(connectorKey: string, owner: string, now: number, durationMs: number): Promise<Lease | undefined>;
  releaseLease(connectorKey: string, lease: Lease): Promise<void>;
  rememberAuthMethod(connectorKey: string, method: ClientAuthMethod, revision: string): Promise<void>;
  /** Journals a new refresh token; refused (false) if a holder with a newer fence journaled already. */
  journalRefreshToken(
    connectorKey: string,
    lease: Lease,
    journal: Omit<RefreshTokenJournal, 'written'>,
  ): Promise<boolean>;
  markJournalWritten(connectorKey: string, refreshToken: string): Promise<void>;
  recordFailure(connectorKey: string, failure: TokenFailure): Promise<void>;
  clearFailure(connectorKey: string): Promise<void>;
  markNeedsReauthorization(connectorKey: string, revision: string, upstreamError: string): Promise<void>;
  /**
   * Claims the connector's forced-refresh slot; undefined when granted, else the milliseconds until the next one.
   */
  takeForcedRefreshSlot(connectorKey: string, now: number, spacingMs: number): Promise<number | undefined>;
}
