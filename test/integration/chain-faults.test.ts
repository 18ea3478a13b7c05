import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CALLER_ROLE, type Harness, runSchedule, SwitchableSource, startHarness } from '../support/harness.ts';
import { type OidcServer, startOidcServer } from '../support/oidc.ts';

/**
 * The refresh-token chain under the faults a real deployment meets, against oidc-provider with rotation and reuse
 * detection (a spent refresh token presented again revokes the grant) and a real dynalite.
 */
describe('Refresh-token chain under faults', () => {
  let oidc: OidcServer;
  let harness: Harness;

  beforeAll(async () => {
    oidc = await startOidcServer({
      clients: [
        {
          client_id: 'chain',
          client_secret: 'chain-secret',
          token_endpoint_auth_method: 'client_secret_basic',
          grant_types: ['refresh_token'],
        },
      ],
      accessTokenTtl: 3600,
    });
    harness = await startHarness();
  });
  afterAll(async () => {
    await harness?.close();
    await oidc?.close();
  });

  const connector = async () => ({
    grantType: 'refresh_token',
    tokenUrl: oidc.tokenUrl,
    clientId: 'chain',
    clientSecret: 'chain-secret',
    refreshToken: await oidc.issueRefreshToken('chain'),
    allowedPrincipals: [CALLER_ROLE],
  });

  it('keeps the chain when the answer arrives after the server rotated, later than one attempt timeout', async () => {
    // Prepare: the server rotates at once, its answer takes 6 s (the attempt timeout is 5 s, the deadline 12 s).
    await harness.writeConnector('refresh-token', 'slow-answer', await connector());
    const vendor = harness.vendor({ env: { TOKEN_VENDOR_FORCED_REFRESH_SECONDS: '0' } });
    const reusesBefore = oidc.reuses();
    oidc.setAnswerDelay(6_000);

    // Act
    const slow = await vendor.vend('refresh-token', 'slow-answer').finally(() => oidc.setAnswerDelay(0));
    const next = await vendor.vend('refresh-token', 'slow-answer', { force: true });

    // Assess
    expect(slow.access_token).toBeTruthy();
    expect(next.access_token).not.toBe(slow.access_token);
    expect(oidc.reuses()).toBe(reusesBefore);
    expect((await harness.readConnector('refresh-token', 'slow-answer')).refreshToken).toBe(
      oidc.issuedRefreshTokens().at(-1),
    );
  }, 20_000);

  it('keeps the chain while the document store refuses writes for five rotations, across a restart', async () => {
    // Prepare
    const document = await connector();
    await harness.writeConnector('refresh-token', 'store-outage', document);
    const source = new SwitchableSource(harness.connectorsDir);
    const env = { TOKEN_VENDOR_FORCED_REFRESH_SECONDS: '0' };
    const reusesBefore = oidc.reuses();
    source.failing = true;

    // Act: three rotations, a restart (a new process: nothing in memory), two more, then the store comes back.
    const before = harness.vendor({ source, env });
    const tokens: string[] = [];
    for (let rotation = 0; rotation < 3; rotation += 1) {
      tokens.push((await before.vend('refresh-token', 'store-outage', { force: true })).access_token);
    }
    const after = harness.vendor({ source, env });
    for (let rotation = 0; rotation < 2; rotation += 1) {
      tokens.push((await after.vend('refresh-token', 'store-outage', { force: true })).access_token);
    }
    const documentDuringOutage = await harness.readConnector('refresh-token', 'store-outage');
    source.failing = false;
    await runSchedule(after.deps);
    const caughtUp = await harness.readConnector('refresh-token', 'store-outage');
    const resumed = await harness.vendor({ env }).vend('refresh-token', 'store-outage', { force: true });

    // Assess
    expect(new Set(tokens).size).toBe(5);
    expect(documentDuringOutage.refreshToken).toBe(document.refreshToken);
    expect(source.writes).toBeGreaterThanOrEqual(5);
    // The scheduled run wrote the chain back without another exchange, then the chain went on from it.
    expect(caughtUp.refreshToken).toBe(oidc.issuedRefreshTokens().at(-2));
    expect(resumed.access_token).toBeTruthy();
    expect(oidc.reuses()).toBe(reusesBefore);
  });

  it('continues from a refresh token an operator put into the document (a re-authorization)', async () => {
    // Prepare: a chain the vendor has rotated twice.
    await harness.writeConnector('refresh-token', 'reauthorized', await connector());
    const vendor = harness.vendor({ env: { TOKEN_VENDOR_FORCED_REFRESH_SECONDS: '0' } });
    await vendor.vend('refresh-token', 'reauthorized');
    await vendor.vend('refresh-token', 'reauthorized', { force: true });
    const fromOperator = await oidc.issueRefreshToken('chain', 'user-2');
    const document = await harness.readConnector('refresh-token', 'reauthorized');
    await harness.writeConnector('refresh-token', 'reauthorized', { ...document, refreshToken: fromOperator });
    const reusesBefore = oidc.reuses();

    // Act
    const token = await vendor.vend('refresh-token', 'reauthorized', { force: true });

    // Assess: the operator's token was the one presented (it is rotated away now).
    expect(token.access_token).toBeTruthy();
    expect(oidc.reuses()).toBe(reusesBefore);
    const chain = (await harness.store.getState('refresh-token/reauthorized')).chain;
    expect(chain?.refreshToken).toBe(oidc.issuedRefreshTokens().at(-1));
    expect((await harness.readConnector('refresh-token', 'reauthorized')).refreshToken).toBe(chain?.refreshToken);
  });
});
