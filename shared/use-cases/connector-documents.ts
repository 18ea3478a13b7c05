import { accessDenied, errorFields, misconfigured, VendorError } from '../core/errors.ts';
import { type ConnectorRef, FAMILIES, refKey } from '../core/identifiers.ts';
import { LruCache } from '../core/lru.ts';
import { type Connector, parseConnector, peekAllowedPrincipals } from '../domain/connector.ts';
import { within } from '../domain/deadline.ts';
import { type NetworkPolicy, refuseUrl } from '../domain/network-policy.ts';
import { type Caller, isAllowed } from '../domain/principals.ts';
import type { ConnectorSource } from '../ports/connector-store.ts';
import type { Log } from '../ports/log.ts';

interface ParsedDocument {
  readonly text: string;
  readonly principals: string[] | undefined;
  readonly connector: Connector | VendorError;
}

/**
 * Connector documents as callers are authorized against them. The last parse of each document is reused while its
 * text is unchanged (the same text always parses the same way, and parsing on every vend was a tenth of the hit
 * path's time), and answers when the connector store is slow or down.
 */
export class ConnectorDocuments {
  readonly #source: ConnectorSource;
  readonly #log: Log;
  readonly #parsed = new LruCache<string, ParsedDocument>(1000);

  constructor(source: ConnectorSource, log: Log) {
    this.#source = source;
    this.#log = log;
  }

  /**
   * The connector, if `caller` may vend it; `access_denied` alike for a stranger and a missing connector, and an
   * invalid document's error only to a caller it allows (CONTRACT §3). The store is waited for at most `budgetMs`
   * when this process has read the document before: then the last copy read answers.
   */
  async authorize(ref: ConnectorRef, caller: Caller, budgetMs: number): Promise<Connector> {
    const text = await this.#read(ref, budgetMs);
    if (text === undefined) throw accessDenied();
    const { principals, connector: parsed } = this.#parse(ref, text);
    // Decide access before validating the rest, so that a stranger cannot tell a broken connector from none.
    if (principals !== undefined && !isAllowed(principals, caller)) throw accessDenied();
    if (parsed instanceof VendorError) throw parsed;
    if (parsed.document.grantType !== FAMILIES[ref.family] || !isAllowed(parsed.document.allowedPrincipals, caller)) {
      throw accessDenied();
    }
    return parsed;
  }

  async #read(ref: ConnectorRef, budgetMs: number): Promise<string | undefined> {
    const known = this.#parsed.peek(refKey(ref));
    if (known === undefined) return this.#source.read(ref);
    try {
      return await within(this.#source.read(ref), budgetMs, 'The connector store');
    } catch (error) {
      if (!(error instanceof VendorError) || error.code !== 'upstream_unavailable') throw error;
      this.#log.warn('the connector store is unavailable; using the document read last', {
        connector: refKey(ref),
        ...errorFields(error),
      });
      return known.text;
    }
  }

  #parse(ref: ConnectorRef, text: string): ParsedDocument {
    const key = refKey(ref);
    const known = this.#parsed.get(key);
    if (known?.text === text) return known;
    let connector: Connector | VendorError;
    try {
      connector = parseConnector(ref, text);
    } catch (error) {
      if (!(error instanceof VendorError)) throw error;
      connector = error;
    }
    const parsed = { text, principals: peekAllowedPrincipals(text), connector };
    this.#parsed.set(key, parsed);
    return parsed;
  }
}

/** Refuses a token URL the deployment may not call before anything is sent; resolved names are checked at connect. */
export function checkTokenUrl(connector: Connector, network: NetworkPolicy): void {
  const refusal = refuseUrl(new URL(connector.document.tokenUrl), network);
  if (refusal !== undefined) throw misconfigured('tokenUrl', refusal);
}
