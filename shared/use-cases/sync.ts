import { errorFields, VendorError } from '../core/errors.ts';
import { type ConnectorRef, refKey, tokenKeyOf } from '../core/identifiers.ts';
import { parseConnector } from '../domain/connector.ts';
import { isScheduled } from '../domain/schedule.ts';
import { profileOf } from '../domain/vend-profile.ts';
import type { Clock } from '../ports/clock.ts';
import type { ConnectorSource } from '../ports/connector-store.ts';
import type { Log } from '../ports/log.ts';
import type { ConnectorStateTable, TokenCache } from '../ports/token-table.ts';
import type { TokenMemory } from './token-memory.ts';

export interface SyncDeps {
  readonly source: ConnectorSource;
  readonly store: TokenCache & Pick<ConnectorStateTable, 'getState' | 'setDue'>;
  readonly memory: TokenMemory;
  readonly clock: Clock;
  readonly log: Log;
}

/** `updated`: profiles rewritten; `discarded`: the document is gone or invalid, so are its cached tokens. */
export type SyncOutcome = 'updated' | 'discarded';

/**
 * Brings what the table holds beside a connector's cached tokens (its profile) up to date with its document, so a
 * change (a principal removed above all) applies to vends served from the cache. A document that is gone or no
 * longer valid takes its cached tokens with it: vends then read the document and answer as it says.
 */
export async function syncConnector(deps: SyncDeps, ref: ConnectorRef): Promise<SyncOutcome> {
  const connectorKey = refKey(ref);
  const text = await deps.source.read(ref, { fresh: true });
  const state = await deps.store.getState(connectorKey, { secrets: false });
  const keys = [...new Set([tokenKeyOf(connectorKey), ...(state.tokenKeys ?? [])])];
  let profile: ReturnType<typeof profileOf> | undefined;
  let scheduled = false;
  try {
    const connector = text === undefined ? undefined : parseConnector(ref, text);
    profile = connector === undefined ? undefined : profileOf(connector);
    scheduled = connector !== undefined && isScheduled(connector.document);
  } catch (error) {
    if (!(error instanceof VendorError)) throw error;
    deps.log.warn('a changed connector document is invalid; its cached tokens are discarded', {
      connector: connectorKey,
      ...errorFields(error),
    });
  }
  for (const key of keys) {
    deps.memory.delete(key);
    if (profile === undefined) await deps.store.deleteToken(key);
    else await deps.store.setProfile(key, profile);
  }
  // A connector the schedule keeps fresh is looked at by its next run (it decides whether anything is due).
  await deps.store.setDue(connectorKey, scheduled ? deps.clock.now() : undefined);
  return profile === undefined ? 'discarded' : 'updated';
}

export interface ReconcileReport {
  readonly changed: number;
  readonly synced: number;
  readonly failed: number;
}

/**
 * Syncs every connector whose document changed at or after `since`, as the listing tells (no document is read
 * unless it changed). One connector's failure does not stop the others; it is synced again by the next run whose
 * window still covers its change.
 */
export async function reconcileConnectors(deps: SyncDeps, since: number): Promise<ReconcileReport> {
  const changed = await deps.source.listChanged(since);
  let synced = 0;
  let failed = 0;
  for (const ref of changed) {
    try {
      await syncConnector(deps, ref);
      synced += 1;
    } catch (error) {
      failed += 1;
      deps.log.warn('connector sync failed', { connector: refKey(ref), ...errorFields(error) });
    }
  }
  return { changed: changed.length, synced, failed };
}
