import { type ConnectorRef, parseConnector, refKey } from './connector.ts';
import { errorFields } from './log.ts';
import type { VendDeps } from './vend.ts';

export interface RotationReport {
  readonly connectors: number;
  readonly refreshed: number;
  readonly failed: number;
}

/** Runs `work` over `items` with at most `limit` in flight. */
async function forEachLimited<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++] as T;
      await work(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/**
 * The scheduled run: keeps refresh-token connectors and `prewarm` connectors fresh by refreshing, through the
 * same lease as vends, every default-scope token that is missing or past its refresh point. One connector's
 * failure never stops the others.
 */
export async function rotateConnectors(deps: VendDeps, concurrency = 8): Promise<RotationReport> {
  const refs = await deps.source.list();
  let refreshed = 0;
  let failed = 0;
  await forEachLimited(refs, concurrency, async (ref: ConnectorRef) => {
    try {
      const text = await deps.source.read(ref);
      if (text === undefined) return;
      const connector = parseConnector(ref, text);
      const { document } = connector;
      if (document.grantType !== 'refresh_token' && document.prewarm !== true) return;
      const tokenKey = `${refKey(ref)}#`;
      const now = deps.now();
      const cached = await deps.store.getToken(tokenKey, now);
      if (cached !== undefined && cached.tokenRevision === connector.tokenRevision && cached.refreshAt > now) return;
      const token = await deps.fetcher.fetch(
        { connector, tokenKey, scope: document.scope },
        { accept: (candidate) => candidate.refreshAt > deps.now(), background: true },
      );
      if (token !== undefined) {
        deps.memory.set(tokenKey, token, deps.now());
        refreshed += 1;
      }
    } catch (error) {
      failed += 1;
      deps.log.warn('scheduled refresh failed', { connector: refKey(ref), ...errorFields(error) });
    }
  });
  const report = { connectors: refs.length, refreshed, failed };
  deps.log.info('scheduled rotation finished', { ...report });
  return report;
}
