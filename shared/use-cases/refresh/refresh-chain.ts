import { errorFields, VendorError } from '../../core/errors.ts';
import { refKey } from '../../core/identifiers.ts';
import { type Connector, fingerprint, parseConnector } from '../../domain/connector.ts';
import { within } from '../../domain/deadline.ts';
import type { Clock } from '../../ports/clock.ts';
import type { ConnectorSource } from '../../ports/connector-store.ts';
import type { Log } from '../../ports/log.ts';
import type { ConnectorState, ConnectorStateTable, RefreshChain } from '../../ports/token-table.ts';

/** A connector waiting for `token-vendor connect` answers like a broken chain (CONTRACT §2). */
export const awaitingAuthorization = (): VendorError =>
  new VendorError(
    'upstream_rejected',
    'The connector awaits its first authorization: run token-vendor connect for it.',
    { upstreamError: 'invalid_grant' },
  );

/** Fingerprints of held refresh tokens kept in the chain, to tell a document that is behind from a new one. */
const HELD_FINGERPRINTS = 16;

/** Is `refreshToken` the chain's own or one it held before (so a document holding it is merely behind)? */
export function isHeld(chain: RefreshChain, refreshToken: string | undefined): boolean {
  if (refreshToken === undefined || refreshToken === chain.refreshToken) return true;
  const print = fingerprint(refreshToken);
  return print === chain.checkpointed || chain.held.includes(print);
}

/**
 * The chain after an exchange: the issued refresh token, or the presented one when the server did not rotate. Its
 * `checkpointed` stays as the table has it, unless the chain was seeded from the document just now.
 */
export function nextChain(
  chain: RefreshChain,
  issued: string | undefined,
  stored: RefreshChain | undefined,
): RefreshChain {
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

export interface RefreshChainDeps {
  readonly source: ConnectorSource;
  readonly store: Pick<ConnectorStateTable, 'claimCheckpoint' | 'recordCheckpoint'>;
  readonly clock: Clock;
  readonly log: Log;
}

/**
 * A refresh-token connector's chain between the token table (its home), the connector document (seed and
 * checkpoint, CONTRACT §2) and, when both refused a write, this process's memory.
 */
export class RefreshChainKeeper {
  readonly #deps: RefreshChainDeps;
  /**
   * Rotated refresh tokens that neither the table nor the connector store took (both down): the last copy is here,
   * and it is used and written again by the next refresh in this process.
   */
  readonly #unsaved = new Map<string, RefreshChain>();

  constructor(deps: RefreshChainDeps) {
    this.#deps = deps;
  }

  /**
   * The document as it is now, under the lease: an operator may have re-authorized. When the connector store is down
   * or slow (past `budgetMs`), the copy in hand will do: the table holds the chain.
   */
  async currentDocument(connector: Connector, state: ConnectorState, budgetMs: number): Promise<Connector> {
    let text: string | undefined;
    try {
      text = await within(this.#deps.source.read(connector.ref, { fresh: true }), budgetMs, 'The connector store');
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
   * The chain to continue: the table's (or this process's unsaved copy of it), unless the document holds a refresh
   * token the vendor never held, which is an operator's re-authorization; the chain continues from that.
   */
  toContinue(connector: Connector, stored: RefreshChain | undefined): RefreshChain {
    const connectorKey = refKey(connector.ref);
    const unsaved = this.#unsaved.get(connectorKey);
    // The memory copy is newer only while the table is still at one of its ancestors.
    const usable =
      unsaved !== undefined && (stored === undefined || isHeld(unsaved, stored.refreshToken))
        ? { ...unsaved, checkpointed: stored?.checkpointed ?? unsaved.checkpointed }
        : stored;
    if (unsaved !== undefined && usable === stored) this.#unsaved.delete(connectorKey);
    const documentToken = connector.document.refreshToken;
    if (usable !== undefined && (documentToken === undefined || isHeld(usable, documentToken))) return usable;
    if (usable !== undefined) {
      this.#deps.log.info('the connector document holds a new refresh token; the chain continues from it', {
        connector: connectorKey,
      });
    }
    if (documentToken === undefined) throw awaitingAuthorization();
    const seed = fingerprint(documentToken);
    return { refreshToken: documentToken, held: [seed], checkpointAt: usable?.checkpointAt, checkpointed: seed };
  }

  /** The table took the chain: any memory copy is history. */
  stored(connectorKey: string): void {
    this.#unsaved.delete(connectorKey);
  }

  /**
   * The table refused the exchange's result (down, not fenced out): the document takes the new refresh token at
   * once, whatever the checkpoint interval, and this process keeps it too. A document value the table never held
   * is what the next holder, anywhere, continues from.
   */
  async keepUnsaved(connector: Connector, chain: RefreshChain): Promise<void> {
    this.#unsaved.set(refKey(connector.ref), chain);
    await this.#writeDocument(connector, chain);
  }

  /**
   * Writes the chain's refresh token back into the connector document when the source's checkpoint interval has
   * passed (at once for files; Secrets Manager at most every 10 minutes), never over a refresh token the vendor
   * never held (an operator's re-authorization). The scheduled run calls it too, to catch up a document left
   * behind. A failure here costs nothing: the table holds the chain.
   */
  async checkpoint(connector: Connector, chain: RefreshChain): Promise<'written' | 'current' | 'deferred' | 'refused'> {
    const { source, store, clock, log } = this.#deps;
    const connectorKey = refKey(connector.ref);
    if (connector.document.refreshToken === chain.refreshToken) return 'current';
    const now = clock.now();
    if (chain.checkpointAt !== undefined && now - chain.checkpointAt < source.checkpointIntervalMs) return 'deferred';
    // One writer per interval across every container: Secrets Manager asks for one write per 10 minutes.
    const claimed = await store
      .claimCheckpoint(connectorKey, now, source.checkpointIntervalMs)
      .catch((error: unknown) => {
        log.warn('claiming a checkpoint failed', { connector: connectorKey, ...errorFields(error) });
        return false;
      });
    if (!claimed) return 'deferred';
    const result = await this.#writeDocument(connector, chain);
    if (result === 'written') {
      await store.recordCheckpoint(connectorKey, now, fingerprint(chain.refreshToken)).catch((error: unknown) => {
        // The next checkpoint finds the document current and records it then.
        log.warn('recording a checkpoint failed', { connector: connectorKey, ...errorFields(error) });
      });
    }
    return result ?? 'deferred';
  }

  async #writeDocument(connector: Connector, chain: RefreshChain): Promise<'written' | 'refused' | undefined> {
    const { source, log } = this.#deps;
    const connectorKey = refKey(connector.ref);
    try {
      const result = await source.writeRefreshToken(connector.ref, chain.refreshToken, (current) =>
        isHeld(chain, current),
      );
      if (result === 'refused') {
        log.warn('the connector document holds a refresh token the vendor never held; left as it is', {
          connector: connectorKey,
        });
      } else {
        log.info('refresh token checkpointed to the connector document', { connector: connectorKey });
      }
      return result;
    } catch (error) {
      log.warn('refresh token checkpoint to the connector store failed; the table keeps the chain', {
        connector: connectorKey,
        ...errorFields(error),
      });
      return undefined;
    }
  }
}
