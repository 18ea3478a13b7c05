import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DemoAuthServer, startDemoAuthServer } from '../../local/demo-auth-server.ts';
import { type LocalCluster, signedFetch, startLocalCluster } from '../support/local-mode.ts';
import { type OidcServer, startOidcServer } from '../support/oidc.ts';

const CALLER = {
  accessKeyId: 'AKIACHAOS',
  secretAccessKey: 'chaos-secret',
  arn: 'arn:aws:iam::111122223333:user/chaos',
};

/** Sends requests from `workers` loops until `deadline`, recording every status. */
async function hammer(urls: readonly string[], deadline: number, method: 'GET' | 'POST' = 'GET'): Promise<number[]> {
  const statuses: number[] = [];
  await Promise.all(
    urls.map(async (url) => {
      while (Date.now() < deadline) {
        const response = await signedFetch(url, CALLER, { method });
        await response.arrayBuffer();
        statuses.push(response.status);
      }
    }),
  );
  return statuses;
}

describe('Refresh-token rotation under load', () => {
  let oidc: OidcServer;
  let cluster: LocalCluster;

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
      accessTokenTtl: 4,
    });
    const chain = {
      grantType: 'refresh_token',
      tokenUrl: oidc.tokenUrl,
      clientId: 'chain',
      clientSecret: 'chain-secret',
      refreshToken: await oidc.issueRefreshToken('chain'),
      allowedPrincipals: ['111122223333'],
    };
    // Three "containers", each also running the scheduled function every second.
    cluster = await startLocalCluster(
      { 'refresh-token/chain': chain },
      { CALLER },
      { processes: 3, env: { TOKEN_VENDOR_ROTATE_INTERVAL_SECONDS: '1', TOKEN_VENDOR_FORCED_REFRESH_SECONDS: '0' } },
    );
  }, 60_000);
  afterAll(async () => {
    await cluster?.close();
    await oidc?.close();
  });

  it('serves every vend and never reuses a refresh token while 4-second tokens rotate for 20 s', async () => {
    // Act: steady vends from every process, plus forced refreshes from one.
    const deadline = Date.now() + 20_000;
    const urls = cluster.processes.flatMap((process) => [1, 2].map(() => `${process.url}/tokens/refresh-token/chain`));
    const [vends, forced] = await Promise.all([
      hammer(urls, deadline),
      hammer([`${cluster.processes[0]?.url}/tokens/refresh-token/chain/refresh`], deadline, 'POST'),
    ]);

    // Assess
    expect(vends.length).toBeGreaterThan(100);
    expect(vends.filter((status) => status !== 200)).toEqual([]);
    expect(forced.filter((status) => status !== 200)).toEqual([]);
    expect(oidc.reuses()).toBe(0);
    expect(oidc.errors()).toEqual([]);
    // Rotations happened: far more than one token per 4 s lifetime came from forced refreshes.
    expect(oidc.tokenRequests()).toBeGreaterThan(10);
  }, 60_000);
});

describe('Crash safety: kill -9 during rotations', () => {
  let server: DemoAuthServer;
  let cluster: LocalCluster;

  beforeAll(async () => {
    // Like Okta and Auth0: a used refresh token keeps working for a short grace period.
    server = await startDemoAuthServer({
      clients: [{ id: 'crash', secret: 'crash-secret', grants: ['refresh_token'] }],
      refreshTokenReuseGraceSeconds: 60,
      delayMs: 100,
    });
    const crash = {
      grantType: 'refresh_token',
      tokenUrl: server.tokenUrl,
      clientId: 'crash',
      clientSecret: 'crash-secret',
      refreshToken: server.issueRefreshToken('crash', 'user-1'),
      allowedPrincipals: ['111122223333'],
    };
    // A short lease so a killed holder blocks the next process only briefly.
    cluster = await startLocalCluster(
      { 'refresh-token/crash': crash },
      { CALLER },
      {
        env: {
          TOKEN_VENDOR_FORCED_REFRESH_SECONDS: '0',
          TOKEN_VENDOR_LEASE_SECONDS: '1',
          TOKEN_VENDOR_FETCH_DEADLINE_SECONDS: '0.9',
          TOKEN_VENDOR_ATTEMPT_TIMEOUT_SECONDS: '0.8',
        },
      },
    );
  });
  afterAll(async () => {
    await cluster?.close();
    await server?.close();
  });

  it('keeps the chain alive through repeated kill -9 at random moments', async () => {
    // Prepare
    const path = join(cluster.fixture.connectorsDir, 'refresh-token', 'crash.json');

    // Act
    for (let round = 0; round < 4; round += 1) {
      const victim = await cluster.start();
      const url = `${victim.url}/tokens/refresh-token/crash/refresh`;
      const load = hammer([url, url], Date.now() + 5_000, 'POST').catch(() => []);
      await new Promise((resolve) => setTimeout(resolve, 150 + Math.random() * 500));
      await victim.stop('SIGKILL');
      await load;
      // The document is never torn: the atomic rename leaves the old or the new one.
      const document = JSON.parse(await readFile(path, 'utf8')) as { refreshToken?: unknown };
      expect(typeof document.refreshToken).toBe('string');
    }
    const survivor = await cluster.start();
    const final = await signedFetch(`${survivor.url}/tokens/refresh-token/crash/refresh`, CALLER, { method: 'POST' });
    const body = (await final.json()) as { access_token?: string };
    await survivor.stop();

    // Assess
    expect(final.status).toBe(200);
    expect(body.access_token).toBeTruthy();
    expect(server.rejectedReuses()).toBe(0);
    expect(server.tokenRequests()).toBeGreaterThan(4);
  }, 90_000);
});
