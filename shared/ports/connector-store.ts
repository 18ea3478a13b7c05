import type { ConnectorRef } from '../core/identifiers.ts';

/**
 * Where connector documents live: Secrets Manager in AWS, a folder of files in local mode. The source only
 * stores raw text; validation happens once, in {@link parseConnector}.
 */
export interface ConnectorSource {
  /**
   * The document's text, or undefined when there is no such connector. `fresh` skips any cache: the refresh
   * grant reads the newest refresh token under the lease.
   */
  read(ref: ConnectorRef, options?: { readonly fresh?: boolean }): Promise<string | undefined>;
  /**
   * Rewrites the document's `refreshToken` durably (atomic file replace, or a new secret version that is
   * idempotent for the same token), from the newest document, unless `mayReplace` refuses the refresh token the
   * document holds now (an operator's re-authorization is never overwritten).
   */
  writeRefreshToken(ref: ConnectorRef, refreshToken: string, mayReplace: ReplaceCheck): Promise<WriteResult>;
  /** Every connector the source holds. */
  list(): Promise<ConnectorRef[]>;
  /**
   * Connectors whose document changed at or after `since` (epoch ms), from the listing alone (Secrets Manager's
   * `LastChangedDate`, a file's modification time): what a reconciliation reads, instead of every document.
   */
  listChanged(since: number): Promise<ConnectorRef[]>;
  /**
   * Minimum spacing of the vendor's checkpoint writes per connector: none for files; Secrets Manager asks for at
   * most one `PutSecretValue` per secret every 10 minutes.
   */
  readonly checkpointIntervalMs: number;
}

/** Given the refresh token the newest document holds, may the vendor write over it? */
export type ReplaceCheck = (current: string | undefined) => boolean;
export type WriteResult = 'written' | 'refused';
