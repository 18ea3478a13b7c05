import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { DynamoDBTokenStore } from '../../shared/adapters/dynamodb-token-table.ts';
import type { CachedToken } from '../../shared/core/token-policy.ts';
import { parseConnector } from '../../shared/domain/connector.ts';
import type { TokenEntry } from '../../shared/ports/token-table.ts';
import {
  CALLER_ROLE,
  CountedMetrics,
  dynamoClient,
  type Harness,
  manualClock,
  runSchedule,
  startHarness,
} from '../support/harness.ts';
import { type ScriptedServer, startScriptedServer, tokenAnswer } from '../support/scripted-server.ts';

/** The real DynamoDB store, counting token reads. */
class CountingStore extends DynamoDBTokenStore {
  reads = 0;
  override async getToken(key: string, now: number): Promise<CachedToken | undefined> {
    this.reads += 1;
    return super.getToken(key, now);
  }
  override async readEntry(key: string, now: number): Promise<TokenEntry> {
    this.reads += 1;
    return super.readEntry(key, now);
  }
}

describe('Caching and refresh ahead', () => {
  let server: ScriptedServer;
  let harness: Harness;
  let store: CountingStore;

  beforeAll(async () => {
    server = await startScriptedServer(() => tokenAnswer({ expires_in: 100 }));
    harness = await startHarness();
    store = new CountingStore({
      tableName: harness.tableName,
      client: dynamoClient(harness.dynamo.endpoint),
      sealer: harness.sealer,
    });
    const document = (extra: object = {}) => ({
      grantType: 'client_credentials',
      tokenUrl: server.url,
      clientId: 'c',
      clientSecret: 's',
      allowedPrincipals: [CALLER_ROLE],
      ...extra,
    });
    await harness.writeConnector('client-credentials', 'memory', document());
    await harness.writeConnector('client-credentials', 'ahead', document());
    await harness.writeConnector('client-credentials', 'warm', document({ prewarm: true }));
    await harness.writeConnector('client-credentials', 'cold', document());
    await harness.writeConnector('client-credentials', 'invalid', { ...document(), surprise: 1 });
    await harness.writeConnector('refresh-token', 'kept', {
      ...document(),
      grantType: 'refresh_token',
      refreshToken: 'rt-1',
    });
  });
  afterAll(async () => {
    await harness.close();
    await server.close();
  });

  it('answers a warm container from memory without reading the table, for a bounded time', async () => {
    // Prepare
    const clock = manualClock();
    const vendor = harness.vendor({ store, now: clock.now });
    const first = await vendor.vend('client-credentials', 'memory');
    const readsAfterFirst = store.reads;

    // Act
    const fromMemory = await vendor.vend('client-credentials', 'memory');
    const readsWhileWarm = store.reads - readsAfterFirst;
    clock.advance(11_000);
    const afterStaleness = await vendor.vend('client-credentials', 'memory');

    // Assess
    expect(fromMemory.access_token).toBe(first.access_token);
    expect(readsWhileWarm).toBe(0);
    expect(afterStaleness.access_token).toBe(first.access_token);
    expect(store.reads - readsAfterFirst).toBe(1);
  });

  it('refreshes ahead of expiry in the background while callers keep the still-valid token', async () => {
    // Prepare
    const clock = manualClock();
    const metrics = new CountedMetrics();
    const vendor = harness.vendor({ now: clock.now, metrics });
    const first = await vendor.vend('client-credentials', 'ahead');
    const requestsAfterFirst = server.requests.length;

    // Act: past where any process acts on the refresh point (the 50 s the token serves a 60 s minTtl, less at most
    // 1.5 × 6 % of it, plus half the rest for the process's spread), not past serving.
    clock.advance(49_500);
    const stillServed = await vendor.vend('client-credentials', 'ahead');
    // Callers get the new token once the background refresh has finished (not before: the memory still holds the
    // old one). Bounded by 10 s, not waitFor's 1 s default: a loaded machine is slower, not wrong.
    const refreshed = await vi.waitFor(
      async () => {
        const vended = await vendor.vend('client-credentials', 'ahead');
        expect(vended.access_token).not.toBe(first.access_token);
        return vended;
      },
      { timeout: 10_000 },
    );

    // Assess
    expect(stillServed.access_token).toBe(first.access_token);
    expect(server.requests.length - requestsAfterFirst).toBe(1);
    expect(refreshed.access_token).not.toBe(first.access_token);
    expect(refreshed.expires_in).toBe(100);
    expect(metrics.counts.get('RefreshesAhead')).toBe(1);
  });

  it('in Lambda, lets the one caller that wins the lease wait for the refresh ahead instead of leaving it frozen', async () => {
    // Prepare
    await harness.writeConnector('client-credentials', 'inline', {
      grantType: 'client_credentials',
      tokenUrl: server.url,
      clientId: 'c',
      clientSecret: 's',
      allowedPrincipals: [CALLER_ROLE],
    });
    const clock = manualClock();
    const vendor = harness.vendor({
      now: clock.now,
      env: { AWS_LAMBDA_FUNCTION_NAME: 'token-vendor-client-credentials' },
    });
    const first = await vendor.vend('client-credentials', 'inline');

    // Act: past the refresh point and this process's spread, as above.
    clock.advance(49_500);
    const refreshedInline = await vendor.vend('client-credentials', 'inline');

    // Assess
    expect(vendor.deps.settings.refreshAhead).toBe('inline');
    expect(refreshedInline.access_token).not.toBe(first.access_token);
    expect(refreshedInline.expires_in).toBe(100);
  });

  it('keeps refresh-token and prewarm connectors fresh on schedule, and leaves an invalid one off it', async () => {
    // Prepare
    const vendor = harness.vendor();

    // Act
    const report = await runSchedule(vendor.deps);
    const again = await runSchedule(vendor.deps);

    // Assess
    const cached = async (key: string) => (await harness.store.getToken(key, Date.now()))?.accessToken;
    expect(await cached('client-credentials/warm#')).toBeDefined();
    expect(await cached('refresh-token/kept#')).toBeDefined();
    expect(await cached('client-credentials/cold#')).toBeUndefined();
    // Only the two the schedule keeps fresh are due; the invalid document took nothing down with it.
    expect(report).toMatchObject({ connectors: 2, refreshed: 2, failed: 0, skipped: 0, unreached: 0 });
    expect(again).toMatchObject({ connectors: 2, refreshed: 0, failed: 0 });
  });

  it('takes the shared lease for a background refresh, so it never races a vend', async () => {
    // Prepare: another holder has the connector's lease.
    const vendor = harness.vendor();
    const text = JSON.stringify({
      grantType: 'client_credentials',
      tokenUrl: server.url,
      clientId: 'c',
      clientSecret: 's',
      allowedPrincipals: [CALLER_ROLE],
    });
    const connector = parseConnector({ family: 'client-credentials', connectorId: 'leased' }, text);
    const lease = await harness.store.acquireLease('client-credentials/leased', 'someone-else', Date.now(), 60_000);
    const requestsBefore = server.requests.length;

    // Act
    const background = await vendor.deps.fetcher.fetch(
      { connector, tokenKey: 'client-credentials/leased#', scope: undefined },
      { requirement: { tokenRevision: connector.tokenRevision, minTtlSeconds: 0 }, background: true },
    );

    // Assess
    expect(lease).toBeDefined();
    expect(background).toBeUndefined();
    expect(server.requests.length).toBe(requestsBefore);
  });
});
