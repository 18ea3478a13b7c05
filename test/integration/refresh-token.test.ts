import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CALLER_ROLE, type Harness, runSchedule, SwitchableSource, startHarness } from '../support/harness.ts';
import { type OidcServer, startOidcServer } from '../support/oidc.ts';
import { startScriptedServer, tokenAnswer } from '../support/scripted-server.ts';

describe('Integration: refresh_token against oidc-provider with rotation', () => {
  let oidc: OidcServer;
  let harness: Harness;

  beforeAll(async () => {
    oidc = await startOidcServer({
      clients: [
        {
          client_id: 'rt-client',
          client_secret: 'rt-secret',
          token_endpoint_auth_method: 'client_secret_basic',
          grant_types: ['refresh_token'],
        },
      ],
      accessTokenTtl: 3600,
    });
    harness = await startHarness();
  });
  afterAll(async () => {
    await harness.close();
    await oidc.close();
  });

  const connector = async (extra: object = {}) => ({
    grantType: 'refresh_token',
    tokenUrl: oidc.tokenUrl,
    clientId: 'rt-client',
    clientSecret: 'rt-secret',
    refreshToken: await oidc.issueRefreshToken('rt-client'),
    allowedPrincipals: [CALLER_ROLE],
    ...extra,
  });

  it('writes the rotated refresh token back into the connector file before answering', async () => {
    // Prepare
    const document = await connector();
    await harness.writeConnector('refresh-token', 'rotating', document);

    // Act
    const token = await harness.vendor().vend('refresh-token', 'rotating');

    // Assess
    const stored = await harness.readConnector('refresh-token', 'rotating');
    expect(token.access_token).toBeTruthy();
    expect(token).not.toHaveProperty('refresh_token');
    expect(JSON.stringify(token)).not.toContain(String(stored.refreshToken));
    expect(stored.refreshToken).not.toBe(document.refreshToken);
    expect({ ...stored, refreshToken: undefined }).toEqual({ ...document, refreshToken: undefined });
  });

  it('keeps the chain intact across forced refreshes in several processes: the server never sees a reuse', async () => {
    // Prepare
    await harness.writeConnector('refresh-token', 'chain', await connector());
    const processes = [
      harness.vendor({ env: { TOKEN_VENDOR_FORCED_REFRESH_SECONDS: '0' } }),
      harness.vendor({ env: { TOKEN_VENDOR_FORCED_REFRESH_SECONDS: '0' } }),
    ];
    const seen = new Set<string>();

    // Act
    for (let round = 0; round < 6; round += 1) {
      const vendor = processes[round % 2];
      const token = await vendor?.vend('refresh-token', 'chain', { force: true });
      if (token !== undefined) seen.add(token.access_token);
    }

    // Assess
    expect(seen.size).toBe(6);
    expect(oidc.reuses()).toBe(0);
    expect(oidc.errors()).toEqual([]);
  });

  it('keeps the old refresh token when the answer carries none', async () => {
    // Prepare
    const server = await startScriptedServer(() => tokenAnswer());
    await harness.writeConnector('refresh-token', 'no-rotation', {
      ...(await connector()),
      tokenUrl: server.url,
      refreshToken: 'never-rotated-rt',
    });

    // Act
    await harness.vendor().vend('refresh-token', 'no-rotation');
    await server.close();

    // Assess
    expect(server.requests[0]?.form.get('refresh_token')).toBe('never-rotated-rt');
    expect(server.requests[0]?.form.has('scope')).toBe(false);
    expect((await harness.readConnector('refresh-token', 'no-rotation')).refreshToken).toBe('never-rotated-rt');
  });

  it('marks a rejected refresh token as needing re-authorization and stops calling until the document changes', async () => {
    // Prepare
    await harness.writeConnector('refresh-token', 'revoked', { ...(await connector()), refreshToken: 'never-issued' });
    const before = oidc.tokenRequests();

    // Act
    const first = await harness
      .vendor()
      .vend('refresh-token', 'revoked')
      .catch((error: unknown) => error);
    const second = await harness
      .vendor()
      .vend('refresh-token', 'revoked')
      .catch((error: unknown) => error);
    const callsWhileBroken = oidc.tokenRequests() - before;
    await harness.writeConnector('refresh-token', 'revoked', await connector());
    const repaired = await harness.vendor().vend('refresh-token', 'revoked');

    // Assess
    expect(first).toMatchObject({ code: 'upstream_rejected', status: 502, upstreamError: 'invalid_grant' });
    expect(second).toMatchObject({ code: 'upstream_rejected', status: 502, upstreamError: 'invalid_grant' });
    expect(callsWhileBroken).toBe(1);
    expect(repaired.access_token).toBeTruthy();
  });

  it('never loses a rotated refresh token when the connector store write fails', async () => {
    // Prepare
    const document = await connector();
    await harness.writeConnector('refresh-token', 'flaky', document);
    const source = new SwitchableSource(harness.connectorsDir);
    source.failing = true;
    const vendor = harness.vendor({ source, env: { TOKEN_VENDOR_FORCED_REFRESH_SECONDS: '0' } });

    // Act: the first vend rotates, but the document write fails; the table holds the new token.
    const first = await vendor.vend('refresh-token', 'flaky');
    const fileAfterFailure = await harness.readConnector('refresh-token', 'flaky');
    const chain = (await harness.store.getState('refresh-token/flaky')).chain;
    source.failing = false;
    const second = await vendor.vend('refresh-token', 'flaky', { force: true });

    // Assess
    expect(first.access_token).toBeTruthy();
    expect(fileAfterFailure.refreshToken).toBe(document.refreshToken);
    expect(chain?.refreshToken).not.toBe(document.refreshToken);
    expect(second.access_token).not.toBe(first.access_token);
    expect(oidc.reuses()).toBe(0);
    const repaired = await harness.readConnector('refresh-token', 'flaky');
    expect(repaired.refreshToken).not.toBe(document.refreshToken);
    expect(repaired.refreshToken).not.toBe(chain?.refreshToken);
    expect(repaired.refreshToken).toBe((await harness.store.getState('refresh-token/flaky')).chain?.refreshToken);
  });
});

describe('A refresh-token connector that awaits its first authorization (CONTRACT §2)', () => {
  let oidc: OidcServer;
  let harness: Harness;

  beforeAll(async () => {
    oidc = await startOidcServer({
      clients: [
        {
          client_id: 'awaiting',
          client_secret: 'awaiting-secret',
          token_endpoint_auth_method: 'client_secret_basic',
          grant_types: ['refresh_token'],
        },
      ],
    });
    harness = await startHarness();
  });
  afterAll(async () => {
    await harness?.close();
    await oidc?.close();
  });

  it('answers like a broken chain, shows as needing re-authorization, and continues once a refresh token is put in', async () => {
    // Prepare: created with an authorization URL and no refresh token yet.
    const document = {
      grantType: 'refresh_token',
      tokenUrl: oidc.tokenUrl,
      authorizationUrl: `${oidc.tokenUrl.replace(/\/token$/, '')}/auth`,
      authorizationScope: 'openid offline_access',
      clientId: 'awaiting',
      clientSecret: 'awaiting-secret',
      allowedPrincipals: [CALLER_ROLE],
    };
    await harness.writeConnector('refresh-token', 'awaiting', document);
    const vendor = harness.vendor();

    // Act
    const before = await vendor.vend('refresh-token', 'awaiting').catch((error: unknown) => error);
    const report = await runSchedule(vendor.deps);
    await harness.writeConnector('refresh-token', 'awaiting', {
      ...document,
      refreshToken: await oidc.issueRefreshToken('awaiting'),
    });
    const after = await vendor.vend('refresh-token', 'awaiting');

    // Assess
    expect(before).toMatchObject({ code: 'upstream_rejected', status: 502, upstreamError: 'invalid_grant' });
    expect((before as Error).message).toContain('authorization');
    expect(report.health).toContainEqual(
      expect.objectContaining({ connector: 'refresh-token/awaiting', state: 'needs_reauthorization' }),
    );
    expect(oidc.tokenRequests()).toBe(1);
    expect(after.access_token).toBeTruthy();
  });
});
