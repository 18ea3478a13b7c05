import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileConnectorSource } from '../../shared/adapters/file-connector-store.ts';
import type { ConnectorRef } from '../../shared/core/identifiers.ts';
import { type RotationReport, rotateConnectors } from '../../shared/use-cases/rotate.ts';
import { CALLER_ROLE, type Harness, manualClock, runSchedule, startHarness } from '../support/harness.ts';
import { type OidcServer, startOidcServer } from '../support/oidc.ts';
import { type ScriptedServer, startScriptedServer, tokenAnswer } from '../support/scripted-server.ts';

/** A loopback port with nothing listening: a dead token server. */
async function deadPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  return typeof address === 'object' && address !== null ? address.port : 1;
}

/** The connectors folder, counting document reads per connector. */
class CountingSource extends FileConnectorSource {
  readonly reads = new Map<string, number>();
  override async read(ref: ConnectorRef): Promise<string | undefined> {
    const key = `${ref.family}/${ref.connectorId}`;
    this.reads.set(key, (this.reads.get(key) ?? 0) + 1);
    return super.read(ref);
  }
}

const FAST = {
  TOKEN_VENDOR_ATTEMPT_TIMEOUT_SECONDS: '0.5',
  TOKEN_VENDOR_FETCH_DEADLINE_SECONDS: '1',
  TOKEN_VENDOR_MAX_ATTEMPTS: '1',
};

describe('Scheduled rotation and health', () => {
  let oidc: OidcServer;
  let scripted: ScriptedServer;
  let harness: Harness;

  beforeAll(async () => {
    oidc = await startOidcServer({
      clients: [
        {
          client_id: 'sched-rt',
          client_secret: 'sched-secret',
          token_endpoint_auth_method: 'client_secret_basic',
          grant_types: ['refresh_token'],
        },
      ],
      accessTokenTtl: 100,
    });
    scripted = await startScriptedServer(() => tokenAnswer({ expires_in: 100 }));
    harness = await startHarness();
  });
  afterAll(async () => {
    await harness.close();
    await scripted.close();
    await oidc.close();
  });

  it('refreshes near-expiry tokens on schedule so that vends then hit the cache', async () => {
    // Prepare
    await harness.writeConnector('refresh-token', 'near-expiry', {
      grantType: 'refresh_token',
      tokenUrl: oidc.tokenUrl,
      clientId: 'sched-rt',
      clientSecret: 'sched-secret',
      refreshToken: await oidc.issueRefreshToken('sched-rt'),
      allowedPrincipals: [CALLER_ROLE],
    });
    const clock = manualClock();
    const vendor = harness.vendor({ now: clock.now });
    const first = await vendor.vend('refresh-token', 'near-expiry');
    // Past the refresh point (at most 50 s − 3 s of the window a 100 s token serves), still served.
    clock.advance(48_000);

    // Act
    const report = await runSchedule(vendor.deps);
    const requestsAfterSchedule = oidc.tokenRequests();
    const vended = await harness.vendor({ now: clock.now }).vend('refresh-token', 'near-expiry');

    // Assess
    expect(report.refreshed).toBeGreaterThanOrEqual(1);
    expect(vended.access_token).not.toBe(first.access_token);
    expect(vended.expires_in).toBe(100);
    expect(oidc.tokenRequests()).toBe(requestsAfterSchedule);
    expect(oidc.reuses()).toBe(0);
  });

  it('reads only the documents of connectors that are due, from the due index', async () => {
    // Prepare: a refresh-token connector the schedule has seen once.
    await harness.writeConnector('refresh-token', 'indexed', {
      grantType: 'refresh_token',
      tokenUrl: oidc.tokenUrl,
      clientId: 'sched-rt',
      clientSecret: 'sched-secret',
      refreshToken: await oidc.issueRefreshToken('sched-rt'),
      allowedPrincipals: [CALLER_ROLE],
    });
    const source = new CountingSource(harness.connectorsDir);
    const clock = manualClock();
    const vendor = harness.vendor({ now: clock.now, source });
    await runSchedule(vendor.deps);
    const reads = () => source.reads.get('refresh-token/indexed') ?? 0;
    const readsAfterFirst = reads();

    // Act: a run before its refresh point, then one after (48 s of the 50 s a 100 s token serves).
    const early = await rotateConnectors(vendor.deps);
    const readsWhileNotDue = reads() - readsAfterFirst;
    clock.advance(48_000);
    const due = await rotateConnectors(vendor.deps);

    // Assess
    const named = (report: RotationReport) => report.health.map((entry) => entry.connector);
    expect(named(early)).not.toContain('refresh-token/indexed');
    expect(readsWhileNotDue).toBe(0);
    expect(named(due)).toContain('refresh-token/indexed');
    expect(due.refreshed).toBeGreaterThanOrEqual(1);
    expect(reads() - readsAfterFirst).toBeGreaterThanOrEqual(1);
    expect(oidc.reuses()).toBe(0);
  });

  it('exercises an idle refresh token at least once per interval even when its access token lives long', async () => {
    // Prepare
    const server = await startScriptedServer((request) =>
      tokenAnswer({ expires_in: 30 * 24 * 3600, refresh_token: `${request.form.get('refresh_token')}+` }),
    );
    await harness.writeConnector('refresh-token', 'idle', {
      grantType: 'refresh_token',
      tokenUrl: server.url,
      clientId: 'c',
      clientSecret: 's',
      refreshToken: 'idle-rt',
      allowedPrincipals: [CALLER_ROLE],
    });
    const clock = manualClock();
    const vendor = harness.vendor({ now: clock.now });
    await runSchedule(vendor.deps, { idleRefreshMs: 24 * 3600_000 });
    const afterFirst = server.requests.length;

    // Act
    clock.advance(12 * 3600_000);
    await runSchedule(vendor.deps, { idleRefreshMs: 24 * 3600_000 });
    const afterHalfDay = server.requests.length;
    clock.advance(13 * 3600_000);
    await runSchedule(vendor.deps, { idleRefreshMs: 24 * 3600_000 });
    await server.close();

    // Assess
    expect(afterHalfDay).toBe(afterFirst);
    expect(server.requests.length).toBe(afterFirst + 1);
    expect((await harness.readConnector('refresh-token', 'idle')).refreshToken).toBe('idle-rt++');
  });

  it('marks only the connector with a dead token server as failing, and backs off instead of retrying every run', async () => {
    // Prepare
    const port = await deadPort();
    const document = (tokenUrl: string) => ({
      grantType: 'client_credentials',
      tokenUrl,
      clientId: 'c',
      clientSecret: 's',
      prewarm: true,
      allowedPrincipals: [CALLER_ROLE],
    });
    await harness.writeConnector('client-credentials', 'dead', document(`http://127.0.0.1:${port}/token`));
    await harness.writeConnector('client-credentials', 'alive', document(scripted.url));
    const clock = manualClock();
    const vendor = harness.vendor({ now: clock.now, env: FAST });
    const startedAt = clock.now();

    // Act
    const first = await runSchedule(vendor.deps);
    clock.advance(10_000);
    const second = await runSchedule(vendor.deps);
    clock.advance(3 * 60_000);
    const third = await runSchedule(vendor.deps);

    // Assess
    const healthIn = (report: typeof first, name: string) => report.health.find((entry) => entry.connector === name);
    expect(healthIn(first, 'client-credentials/dead')).toMatchObject({
      state: 'failing',
      consecutiveFailures: 1,
      lastError: 'upstream_unavailable',
    });
    expect(healthIn(first, 'client-credentials/alive')).toMatchObject({ state: 'ok' });
    const nextAttempt = Date.parse(healthIn(first, 'client-credentials/dead')?.nextAttemptAt ?? '');
    expect(nextAttempt).toBeGreaterThanOrEqual(startedAt + 48_000);
    expect(nextAttempt).toBeLessThanOrEqual(startedAt + 72_000);
    expect(second.skipped).toBeGreaterThanOrEqual(1);
    expect(healthIn(second, 'client-credentials/dead')).toMatchObject({ state: 'failing', consecutiveFailures: 1 });
    expect(healthIn(third, 'client-credentials/dead')).toMatchObject({ state: 'failing', consecutiveFailures: 2 });
    expect(healthIn(third, 'client-credentials/alive')).toMatchObject({ state: 'ok' });
  });

  it('moves a refresh-token connector to needs_reauthorization on invalid_grant and leaves it alone until its document changes', async () => {
    // Prepare
    const document = {
      grantType: 'refresh_token',
      tokenUrl: oidc.tokenUrl,
      clientId: 'sched-rt',
      clientSecret: 'sched-secret',
      refreshToken: 'revoked-long-ago',
      allowedPrincipals: [CALLER_ROLE],
    };
    await harness.writeConnector('refresh-token', 'revoked', document);
    const vendor = harness.vendor();

    // Act
    const first = await runSchedule(vendor.deps);
    const requestsAfterFirst = oidc.tokenRequests();
    const second = await runSchedule(vendor.deps);
    const requestsWhileBroken = oidc.tokenRequests() - requestsAfterFirst;
    await harness.writeConnector('refresh-token', 'revoked', {
      ...document,
      refreshToken: await oidc.issueRefreshToken('sched-rt'),
    });
    const repaired = await runSchedule(vendor.deps);

    // Assess
    const healthIn = (report: typeof first) =>
      report.health.find((entry) => entry.connector === 'refresh-token/revoked');
    expect(healthIn(first)).toMatchObject({ state: 'needs_reauthorization', upstreamError: 'invalid_grant' });
    expect(first.needsReauthorization).toBeGreaterThanOrEqual(1);
    expect(healthIn(second)).toMatchObject({ state: 'needs_reauthorization' });
    expect(requestsWhileBroken).toBe(0);
    expect(healthIn(repaired)).toMatchObject({ state: 'ok' });
  });

  it('goes through 200 connectors on a slow token server within the run budget', async () => {
    // Prepare: a separate folder of 200 prewarm connectors, a server that takes 200 ms per answer.
    const slow = await startScriptedServer(async () => {
      await new Promise((resolve) => setTimeout(resolve, 200));
      return tokenAnswer();
    });
    const many = await startHarness();
    for (let index = 0; index < 200; index += 1) {
      await many.writeConnector('client-credentials', `bulk-${index}`, {
        grantType: 'client_credentials',
        tokenUrl: slow.url,
        clientId: 'c',
        clientSecret: 's',
        clientAuthentication: 'body',
        prewarm: true,
        allowedPrincipals: [CALLER_ROLE],
      });
    }
    const started = Date.now();

    // Act
    const report = await runSchedule(many.vendor().deps, { budgetMs: 20_000, concurrency: 16 });
    const elapsed = Date.now() - started;
    await many.close();
    await slow.close();

    // Assess: every connector refreshed, one request each, and the run ended inside its budget.
    expect(report).toMatchObject({ connectors: 200, refreshed: 200, failed: 0, unreached: 0 });
    expect(slow.requests).toHaveLength(200);
    expect(elapsed).toBeLessThan(20_000);
  }, 60_000);
});
