import type { ConnectorRef } from './connector.ts';

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
   * idempotent for the same token).
   */
  writeRefreshToken(ref: ConnectorRef, refreshToken: string): Promise<void>;
  /** Every connector the source holds. */
  list(): Promise<ConnectorRef[]>;
}

/** Sets `refreshToken` in a document's text, keeping every other field as it was. */
export function withRefreshToken(text: string, refreshToken: string): string {
  const document = JSON.parse(text) as Record<string, unknown>;
  document.refreshToken = refreshToken;
  return `${JSON.stringify(document, null, 2)}\n`;
}
