import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DemoAuthServer, startDemoAuthServer } from '../../local/demo-auth-server.ts';
import {
  type LocalFixture,
  type LocalMode,
  prepareLocalFixture,
  signedFetch,
  startLocalMode,
} from '../support/local-mode.ts';
import { type OidcServer, startOidcServer } from '../support/oidc.ts';
import { type ScriptedServer, startScriptedServer } from '../support/scripted-server.ts';

const CALLER = {
  accessKeyId: 'AKIALOGS',
  secretAccessKey: 'log-test-signing-key',
  arn: 'arn:aws:iam::111122223333:user/logs',
};
const STRANGER = {
  accessKeyId: 'AKIASTRANGER',
  secretAccessKey: 'stranger-signing-key',
  arn: 'arn:aws:iam::999988887777:user/x',
};

// Values that must never appear in a log line or an error body; long and distinctive so a hit is no accident.
const SECRETS = {
  ccSecret: 'cc-client-secret-5f1c9a7e',
  pwSecret: 'pw-client-secret-0b3e6d21',
  password: 'alice-password-8c2f4e19',
  wrongPassword: 'wrong-password-71d0b3aa',
  rtSecret: 'rt-client-secret-9e4a2c60',
  typoSecret: 'typo-secret-value-3a7d1f52',
  scriptedSecret: 'scripted-secret-6b8e0c47',
  staleRefresh: 'never-issued-refresh-0d9f',
};

describe('No secret in any log line or error body (every flow, debug level)', () => {
  let oidc: OidcServer;
  let demo: DemoAuthServer;
  let scripted: ScriptedServer;
  let fixture: LocalFixture;
  let local: LocalMode;
  const bodies: { status: number; text: string }[] = [];
  const accessTokens = new Set<string>();
  const refreshTokens = new Set<string>();

  const call = async (path: string, options: { method?: 'GET' | 'POST'; identity?: typeof CALLER } = {}) => {
    const response = await signedFetch(`${local.url}${path}`, options.identity ?? CALLER, {
      method: options.method ?? 'GET',
    });
    const text = await response.text();
    bodies.push({ status: response.status, text });
    if (response.status === 200) accessTokens.add((JSON.parse(text) as { access_token: string }).access_token);
    return response.status;
  };
  const noteRefreshToken = async (family: string, id: string) => {
    const document = JSON.parse(await readFile(join(fixture.connectorsDir, family, `${id}.json`), 'utf8')) as {
      refreshToken?: string;
    };
    if (document.refreshToken !== undefined) refreshTokens.add(document.refreshToken);
  };

  beforeAll(async () => {
    oidc = await startOidcServer({
      clients: [
        {
          client_id: 'logs-cc',
          client_secret: SECRETS.ccSecret,
          token_endpoint_auth_method: 'client_secret_basic',
          grant_types: ['client_credentials'],
          scope: 'read write',
        },
        {
          client_id: 'logs-rt',
          client_secret: SECRETS.rtSecret,
          token_endpoint_auth_method: 'client_secret_basic',
          grant_types: ['refresh_token'],
        },
      ],
    });
    demo = await startDemoAuthServer({
      clients: [{ id: 'logs-pw', secret: SECRETS.pwSecret, grants: ['password'] }],
      users: { alice: SECRETS.password },
    });
    scripted = await startScriptedServer(() => ({ status: 200, body: '<html>login</html>' }));
    const allowed = ['111122223333'];
    const refreshToken = await oidc.issueRefreshToken('logs-rt');
    refreshTokens.add(refreshToken);
    fixture = await prepareLocalFixture(
      {
        'client-credentials/ok': {
          grantType: 'client_credentials',
          tokenUrl: oidc.tokenUrl,
          clientId: 'logs-cc',
          clientSecret: SECRETS.ccSecret,
          scope: 'read write',
          allowedPrincipals: allowed,
        },
        'client-credentials/wrong-secret': {
          grantType: 'client_credentials',
          tokenUrl: oidc.tokenUrl,
          clientId: 'logs-cc',
          clientSecret: SECRETS.typoSecret,
          allowedPrincipals: allowed,
        },
        'client-credentials/typo': {
          grantType: 'client_credentials',
          tokenUrl: oidc.tokenUrl,
          clientId: 'logs-cc',
          clientSecrt: SECRETS.typoSecret,
          allowedPrincipals: allowed,
        },
        'client-credentials/html': {
          grantType: 'client_credentials',
          tokenUrl: scripted.url,
          clientId: 'x',
          clientSecret: SECRETS.scriptedSecret,
          allowedPrincipals: allowed,
        },
        'client-credentials/metadata': {
          grantType: 'client_credentials',
          tokenUrl: 'http://169.254.169.254/token',
          clientId: 'x',
          clientSecret: SECRETS.scriptedSecret,
          allowedPrincipals: allowed,
        },
        'password/ok': {
          grantType: 'password',
          tokenUrl: demo.tokenUrl,
          clientId: 'logs-pw',
          clientSecret: SECRETS.pwSecret,
          username: 'alice',
          password: SECRETS.password,
          additionalHeaders: { 'X-Password': '{{password}}' },
          allowedPrincipals: allowed,
        },
        'password/wrong': {
          grantType: 'password',
          tokenUrl: demo.tokenUrl,
          clientId: 'logs-pw',
          clientSecret: SECRETS.pwSecret,
          username: 'alice',
          password: SECRETS.wrongPassword,
          allowedPrincipals: allowed,
        },
        'refresh-token/ok': {
          grantType: 'refresh_token',
          tokenUrl: oidc.tokenUrl,
          clientId: 'logs-rt',
          clientSecret: SECRETS.rtSecret,
          refreshToken,
          allowedPrincipals: allowed,
        },
        'refresh-token/revoked': {
          grantType: 'refresh_token',
          tokenUrl: oidc.tokenUrl,
          clientId: 'logs-rt',
          clientSecret: SECRETS.rtSecret,
          refreshToken: SECRETS.staleRefresh,
          allowedPrincipals: allowed,
        },
      },
      { CALLER, STRANGER },
    );
    local = await startLocalMode({
      ...fixture.env,
      POWERTOOLS_LOG_LEVEL: 'DEBUG',
      TOKEN_VENDOR_ROTATE_INTERVAL_SECONDS: '1',
      TOKEN_VENDOR_ATTEMPT_TIMEOUT_SECONDS: '0.5',
      TOKEN_VENDOR_FETCH_DEADLINE_SECONDS: '2',
    });
  });
  afterAll(async () => {
    await local?.stop();
    await Promise.all([oidc?.close(), demo?.close(), scripted?.close()]);
    await fixture?.cleanup();
  });

  it('runs every flow, then finds none of the values in the output or any error body', async () => {
    // Act: successes, rotations, refusals, faults and denials.
    const statuses = [
      await call('/tokens/client-credentials/ok'),
      await call('/tokens/client-credentials/ok?scope=read'),
      await call('/tokens/client-credentials/ok/refresh', { method: 'POST' }),
      await call('/tokens/client-credentials/ok/refresh', { method: 'POST' }),
      await call('/tokens/client-credentials/wrong-secret'),
      await call('/tokens/client-credentials/typo'),
      await call('/tokens/client-credentials/html'),
      await call('/tokens/client-credentials/metadata'),
      await call('/tokens/password/ok'),
      await call('/tokens/password/wrong'),
      await call('/tokens/refresh-token/ok'),
      await call('/tokens/refresh-token/revoked'),
      await call('/tokens/client-credentials/ok', { identity: STRANGER }),
      await call('/tokens/client-credentials/ok?minTtl=-1'),
    ];
    await noteRefreshToken('refresh-token', 'ok');
    statuses.push(await call('/tokens/refresh-token/ok/refresh', { method: 'POST' }));
    await noteRefreshToken('refresh-token', 'ok');
    const output = local.output();

    // Assess
    expect(statuses).toEqual([200, 200, 200, 429, 502, 500, 502, 500, 200, 502, 200, 502, 403, 400, 200]);
    expect(output).toMatch(/"level":"(INFO|WARN|ERROR)"/);
    const values = [...Object.values(SECRETS), ...accessTokens, ...refreshTokens, CALLER.secretAccessKey];
    expect(refreshTokens.size).toBeGreaterThanOrEqual(3);
    for (const value of values) expect(output).not.toContain(value);
    for (const body of bodies.filter((entry) => entry.status !== 200)) {
      for (const value of values) expect(body.text).not.toContain(value);
    }
  }, 60_000);
});
