import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DemoAuthServer, startDemoAuthServer } from '../../local/demo-auth-server.ts';
import { type FaultProxy, startFaultProxy } from '../support/fault-proxy.ts';
import { type LocalCluster, type LocalMode, signedFetch, startLocalCluster } from '../support/local-mode.ts';
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

describe('Crash safety against a strict server (no reuse grace period)', () => {
  let oidc: OidcServer;
  let cluster: LocalCluster;

  beforeAll(async () => {
    oidc = await startOidcServer({
      clients: [
        {
          client_id: 'strict',
          client_secret: 'strict-secret',
          token_endpoint_auth_method: 'client_secret_basic',
          grant_types: ['refresh_token'],
        },
      ],
    });
    const strict = {
      grantType: 'refresh_token',
      tokenUrl: oidc.tokenUrl,
      clientId: 'strict',
      clientSecret: 'strict-secret',
      refreshToken: await oidc.issueRefreshToken('strict'),
      allowedPrincipals: ['111122223333'],
    };
    cluster = await startLocalCluster(
      { 'refresh-token/strict': strict },
      { CALLER },
      {
        env: {
          TOKEN_VENDOR_FORCED_REFRESH_SECONDS: '0',
          TOKEN_VENDOR_LEASE_SECONDS: '1',
          TOKEN_VENDOR_FETCH_DEADLINE_SECONDS: '0.9',
          TOKEN_VENDOR_ATTEMPT_TIMEOUT_SECONDS: '0.5',
        },
      },
    );
  });
  afterAll(async () => {
    await cluster?.close();
    await oidc?.close();
  });

  it('keeps the chain when holders are killed with their exchange in flight, before the server acted on it', async () => {
    // Act: three holders killed while their refresh request waits at the server, each followed by a survivor.
    for (let round = 0; round < 3; round += 1) {
      const victim = await cluster.start();
      const held = oidc.holdNext();
      const abandoned = signedFetch(`${victim.url}/tokens/refresh-token/strict/refresh`, CALLER, {
        method: 'POST',
      }).catch(() => undefined);
      const request = await held;
      await victim.stop('SIGKILL');
      await request.clientGone;
      request.release();
      await abandoned;
      const survivor = await cluster.start();
      const next = await signedFetch(`${survivor.url}/tokens/refresh-token/strict/refresh`, CALLER, {
        method: 'POST',
      });
      await next.arrayBuffer();
      await survivor.stop();
      expect(next.status).toBe(200);
    }

    // Assess: no killed request reached the provider, and no refresh token was ever presented twice.
    expect(oidc.droppedRequests()).toBe(3);
    expect(oidc.reuses()).toBe(0);
    expect(oidc.errors()).toEqual([]);
    const document = JSON.parse(
      await readFile(join(cluster.fixture.connectorsDir, 'refresh-token', 'strict.json'), 'utf8'),
    ) as { refreshToken?: string };
    expect(document.refreshToken).toBe(oidc.issuedRefreshTokens().at(-1));
  }, 60_000);
});

describe('A holder stopped past its lease mid-exchange', () => {
  let oidc: OidcServer;
  let cluster: LocalCluster;
  let proxy: FaultProxy;
  let stalled: LocalMode;
  let other: LocalMode;

  beforeAll(async () => {
    // A server that keeps a used refresh token valid (a reuse grace period), so a takeover can continue the chain.
    oidc = await startOidcServer({
      clients: [
        {
          client_id: 'paused',
          client_secret: 'paused-secret',
          token_endpoint_auth_method: 'client_secret_basic',
          grant_types: ['refresh_token'],
        },
      ],
      strict: false,
    });
    const paused = {
      grantType: 'refresh_token',
      tokenUrl: oidc.tokenUrl,
      clientId: 'paused',
      clientSecret: 'paused-secret',
      refreshToken: await oidc.issueRefreshToken('paused'),
      allowedPrincipals: ['111122223333'],
    };
    cluster = await startLocalCluster(
      { 'refresh-token/paused': paused },
      { CALLER },
      {
        env: {
          TOKEN_VENDOR_FORCED_REFRESH_SECONDS: '0',
          TOKEN_VENDOR_LEASE_SECONDS: '2',
          TOKEN_VENDOR_FETCH_DEADLINE_SECONDS: '1.5',
          TOKEN_VENDOR_ATTEMPT_TIMEOUT_SECONDS: '0.5',
        },
      },
    );
    // The holder to stall reaches DynamoDB through a proxy that can stop answering.
    proxy = await startFaultProxy(cluster.fixture.env.AWS_ENDPOINT_URL_DYNAMODB);
    stalled = await cluster.start({ AWS_ENDPOINT_URL_DYNAMODB: proxy.endpoint });
    other = await cluster.start();
  });
  afterAll(async () => {
    stalled?.child.kill('SIGCONT');
    await cluster?.close();
    await proxy?.close();
    await oidc?.close();
  });

  it('stores and publishes nothing once resumed: the chain of the holder that took over stands', async () => {
    // Prepare
    const path = join(cluster.fixture.connectorsDir, 'refresh-token', 'paused.json');
    const documentToken = async () =>
      (JSON.parse(await readFile(path, 'utf8')) as { refreshToken?: string }).refreshToken;

    // Act: the server rotates for the first holder; its write of the result stalls (a hung DynamoDB call), and the
    // process is stopped there (as by a long GC pause) until well past its lease.
    const held = oidc.holdNext();
    const first = signedFetch(`${stalled.url}/tokens/refresh-token/paused/refresh`, CALLER, { method: 'POST' });
    const request = await held;
    await request.processAndHoldAnswer();
    proxy.mode = 'hang';
    const stuck = proxy.nextSwallowed();
    request.releaseAnswer();
    await stuck;
    stalled.child.kill('SIGSTOP');
    // The other process waits out the stalled holder's lease, takes it over and rotates on.
    const takeover = await signedFetch(`${other.url}/tokens/refresh-token/paused/refresh`, CALLER, { method: 'POST' });
    await takeover.arrayBuffer();
    const afterTakeover = await documentToken();
    proxy.mode = 'forward';
    stalled.child.kill('SIGCONT');
    await (await first).arrayBuffer();
    const afterResume = await documentToken();
    const next = await signedFetch(`${stalled.url}/tokens/refresh-token/paused/refresh`, CALLER, { method: 'POST' });
    await next.arrayBuffer();

    // Assess
    const [stalledHolders, takeoverHolders, afterwards] = oidc.issuedRefreshTokens();
    expect(takeover.status).toBe(200);
    expect(afterTakeover).toBe(takeoverHolders);
    // The resumed holder's rotated token went nowhere: not into the document, not into the chain.
    expect(afterResume).toBe(takeoverHolders);
    expect(afterResume).not.toBe(stalledHolders);
    expect(next.status).toBe(200);
    expect(await documentToken()).toBe(afterwards);
    expect(oidc.issuedRefreshTokens()).toHaveLength(3);
  }, 60_000);
});
