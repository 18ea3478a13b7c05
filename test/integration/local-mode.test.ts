import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LocalMode, signedFetch, startLocalMode } from '../support/local-mode.ts';
import { type OidcServer, startOidcServer } from '../support/oidc.ts';

const run = promisify(execFile);

const ALICE = {
  accessKeyId: 'AKIAALICE',
  secretAccessKey: 'alice-secret',
  arn: 'arn:aws:sts::111122223333:assumed-role/workload/alice',
};
const MALLORY = {
  accessKeyId: 'AKIAMALLORY',
  secretAccessKey: 'mallory-secret',
  arn: 'arn:aws:iam::999988887777:user/mallory',
};

describe('End to end: local mode over SigV4-signed HTTP', () => {
  let oidc: OidcServer;
  let dir: string;
  let local: LocalMode;

  beforeAll(async () => {
    oidc = await startOidcServer({
      clients: [
        {
          client_id: 'e2e-cc',
          client_secret: 'e2e-secret',
          token_endpoint_auth_method: 'client_secret_basic',
          grant_types: ['client_credentials'],
          scope: 'read write',
        },
        {
          client_id: 'e2e-rt',
          client_secret: 'e2e-rt-secret',
          token_endpoint_auth_method: 'client_secret_basic',
          grant_types: ['refresh_token'],
        },
      ],
    });
    dir = await mkdtemp(join(tmpdir(), 'token-vendor-e2e-'));
    const connectors = join(dir, 'connectors');
    await mkdir(join(connectors, 'client-credentials'), { recursive: true });
    await mkdir(join(connectors, 'refresh-token'), { recursive: true });
    await writeFile(
      join(connectors, 'client-credentials', 'crm.json'),
      JSON.stringify({
        grantType: 'client_credentials',
        tokenUrl: oidc.tokenUrl,
        clientId: 'e2e-cc',
        clientSecret: 'e2e-secret',
        scope: 'read write',
        allowedPrincipals: ['arn:aws:iam::111122223333:role/workload'],
      }),
    );
    await writeFile(
      join(connectors, 'client-credentials', 'broken.json'),
      JSON.stringify({
        grantType: 'client_credentials',
        tokenUrl: oidc.tokenUrl,
        clientId: 'e2e-cc',
        clientSecrett: 'typo-secret-value',
        allowedPrincipals: ['111122223333'],
      }),
    );
    await writeFile(
      join(connectors, 'refresh-token', 'mail.json'),
      JSON.stringify({
        grantType: 'refresh_token',
        tokenUrl: oidc.tokenUrl,
        clientId: 'e2e-rt',
        clientSecret: 'e2e-rt-secret',
        refreshToken: await oidc.issueRefreshToken('e2e-rt'),
        allowedPrincipals: ['111122223333'],
      }),
    );
    const principals = join(dir, 'principals.json');
    await writeFile(principals, JSON.stringify({ [ALICE.accessKeyId]: ALICE, [MALLORY.accessKeyId]: MALLORY }));
    local = await startLocalMode({
      TOKEN_VENDOR_CONNECTORS_DIR: connectors,
      TOKEN_VENDOR_LOCAL_PRINCIPALS: principals,
    });
  });
  afterAll(async () => {
    await local?.stop();
    await oidc?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('vends a token to an allowed assumed-role session', async () => {
    // Act
    const response = await signedFetch(`${local.url}/tokens/client-credentials/crm?scope=read`, ALICE);
    const body = (await response.json()) as Record<string, unknown>;

    // Assess
    expect(response.status).toBe(200);
    expect(response.headers.get('cache-control')).toBe('no-store');
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    expect(body).toMatchObject({ token_type: 'Bearer', scope: 'read' });
    expect(Object.keys(body).sort()).toEqual([
      'access_token',
      'expires_at',
      'expires_in',
      'header',
      'scope',
      'token_type',
    ]);
  });

  it('refuses a missing, wrong or expired signature with 403', async () => {
    // Act
    const unsigned = await fetch(`${local.url}/tokens/client-credentials/crm`);
    const wrongSecret = await signedFetch(`${local.url}/tokens/client-credentials/crm`, {
      ...ALICE,
      secretAccessKey: 'guess',
    });
    const expired = await signedFetch(`${local.url}/tokens/client-credentials/crm`, ALICE, {
      signingDate: new Date(Date.now() - 20 * 60_000),
    });
    const wrongService = await signedFetch(`${local.url}/tokens/client-credentials/crm`, ALICE, { service: 's3' });

    // Assess
    for (const response of [unsigned, wrongSecret, expired, wrongService]) {
      expect(response.status).toBe(403);
      expect(((await response.json()) as { error: string }).error).toBe('access_denied');
    }
  });

  it('gives a stranger and a missing connector the same 403', async () => {
    // Act
    const stranger = await signedFetch(`${local.url}/tokens/client-credentials/crm`, MALLORY);
    const missing = await signedFetch(`${local.url}/tokens/client-credentials/nope`, ALICE);
    const wrongFamily = await signedFetch(`${local.url}/tokens/password/crm`, ALICE);
    const strangerOnBroken = await signedFetch(`${local.url}/tokens/client-credentials/broken`, MALLORY);

    // Assess
    const bodies = await Promise.all(
      [stranger, missing, wrongFamily, strangerOnBroken].map((response) => response.text()),
    );
    expect([stranger.status, missing.status, wrongFamily.status, strangerOnBroken.status]).toEqual([
      403, 403, 403, 403,
    ]);
    expect(new Set(bodies).size).toBe(1);
  });

  it('answers malformed input with 400 and a broken connector with 500 naming the field, never its value', async () => {
    // Act
    const badId = await signedFetch(`${local.url}/tokens/client-credentials/..hidden`, ALICE);
    const badFamily = await signedFetch(`${local.url}/tokens/implicit/crm`, ALICE);
    const badMinTtl = await signedFetch(`${local.url}/tokens/client-credentials/crm?minTtl=soon`, ALICE);
    const badScope = await signedFetch(`${local.url}/tokens/client-credentials/crm?scope=admin`, ALICE);
    const broken = await signedFetch(`${local.url}/tokens/client-credentials/broken`, ALICE);

    // Assess
    expect([badId.status, badFamily.status, badMinTtl.status, badScope.status]).toEqual([400, 400, 400, 400]);
    expect(((await badId.json()) as { error: string }).error).toBe('invalid_request');
    expect(broken.status).toBe(500);
    const body = await broken.text();
    expect(JSON.parse(body)).toMatchObject({ error: 'connector_misconfigured' });
    expect(body).toContain('clientSecrett');
    expect(body).not.toContain('typo-secret-value');
  });

  it.each([
    ['a dot-dot connector ID', '/tokens/client-credentials/..'],
    ['an encoded slash', '/tokens/client-credentials/crm%2F..%2Fcrm'],
    ['an encoded dot-dot segment', '/tokens/client-credentials/%2E%2E'],
    ['a control character', '/tokens/client-credentials/crm%00'],
    ['a newline', '/tokens/client-credentials/crm%0A'],
    ['unicode', '/tokens/client-credentials/cr%C3%A9m'],
    ['129 characters', `/tokens/client-credentials/${'a'.repeat(129)}`],
    ['broken percent-encoding', '/tokens/client-credentials/crm%G1'],
    ['a scope with a control character', '/tokens/client-credentials/crm?scope=read%01'],
    ['a scope with a quote', '/tokens/client-credentials/crm?scope=read%22'],
    ['an empty scope', '/tokens/client-credentials/crm?scope='],
    ['a negative minTtl', '/tokens/client-credentials/crm?minTtl=-5'],
    ['a fractional minTtl', '/tokens/client-credentials/crm?minTtl=1.5'],
    ['an exponent minTtl', '/tokens/client-credentials/crm?minTtl=1e3'],
    ['a huge minTtl', '/tokens/client-credentials/crm?minTtl=99999999999'],
    ['an oversize query', `/tokens/client-credentials/crm?scope=${'read%20'.repeat(900)}read`],
  ])('answers %s with 400 invalid_request', async (_name, path) => {
    // Act
    const response = await signedFetch(`${local.url}${path}`, ALICE);

    // Assess
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: string }).error).toBe('invalid_request');
  });

  it('forces a refresh with POST …/refresh, rotating and storing the refresh token', async () => {
    // Prepare
    const path = join(dir, 'connectors', 'refresh-token', 'mail.json');
    const before = JSON.parse(await readFile(path, 'utf8')) as { refreshToken: string };
    const first = await signedFetch(`${local.url}/tokens/refresh-token/mail`, ALICE);
    const firstBody = (await first.json()) as { access_token: string };

    // Act
    const forced = await signedFetch(`${local.url}/tokens/refresh-token/mail/refresh`, ALICE, { method: 'POST' });
    const forcedBody = (await forced.json()) as { access_token: string };
    const tooSoon = await signedFetch(`${local.url}/tokens/refresh-token/mail/refresh`, ALICE, { method: 'POST' });

    // Assess
    expect(forced.status).toBe(200);
    expect(forcedBody.access_token).not.toBe(firstBody.access_token);
    expect(tooSoon.status).toBe(429);
    expect(Number(tooSoon.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    const after = JSON.parse(await readFile(path, 'utf8')) as { refreshToken: string };
    expect(after.refreshToken).not.toBe(before.refreshToken);
    expect(oidc.reuses()).toBe(0);
    expect(local.output()).not.toContain(after.refreshToken);
    expect(local.output()).not.toContain(forcedBody.access_token);
  });
});

describe('End to end: npm start on a fresh clone (demo mode)', () => {
  it('serves a real token to the README curl line with no settings at all', async () => {
    // Prepare: an empty working directory, no connectors, no principals file.
    const cwd = await mkdtemp(join(tmpdir(), 'token-vendor-demo-'));
    const demo = await startLocalMode({}, cwd);
    try {
      const curlLine = /curl --aws-sigv4 "([^"]+)" --user "([^"]+)" (\S+)/.exec(demo.output());
      expect(curlLine).not.toBeNull();
      const [, sigv4 = '', user = ''] = curlLine ?? [];

      // Act: curl's own SigV4 implementation, not ours.
      const { stdout } = await run('curl', [
        '-s',
        '--aws-sigv4',
        sigv4,
        '--user',
        user,
        `${demo.url}/tokens/client-credentials/demo`,
      ]);

      // Assess
      const body = JSON.parse(stdout) as { access_token: string; token_type: string };
      expect(body.token_type).toBe('Bearer');
      expect(body.access_token.length).toBeGreaterThan(10);
      expect(demo.output()).toMatch(/DEMO MODE/);
    } finally {
      await demo.stop();
      await rm(cwd, { recursive: true, force: true });
    }
  });
});
