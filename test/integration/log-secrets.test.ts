import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DynamoDBClient, ScanCommand } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DemoAuthServer, startDemoAuthServer } from '../../local/demo-auth-server.ts';
import { type EmbeddedDynamoDB, startEmbeddedDynamoDB } from '../../local/dynamodb.ts';
import { localCredentials } from '../support/harness.ts';
import {
  eventually,
  type LocalFixture,
  type LocalMode,
  prepareLocalFixture,
  signedFetch,
  startLocalMode,
} from '../support/local-mode.ts';
import { type OidcServer, startOidcServer } from '../support/oidc.ts';
import { type RecordedRequest, type ScriptedServer, startScriptedServer } from '../support/scripted-server.ts';

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
  echoSecret: 'echoed-client-secret-4c1e',
  echoPassword: 'made-up.echoed-password.2f8a60d3',
  echoRefresh: 'echoed-refresh-token-77b2',
  echoHeader: 'echoed-api-key-5d03e9a1',
};

/** A token server that answers every request with one of the secrets it was sent, as its OAuth `error` code. */
function echoScript(request: RecordedRequest) {
  const basic = Buffer.from((request.headers.authorization ?? '').replace(/^Basic /, ''), 'base64').toString();
  const echoed =
    request.form.get('refresh_token') ??
    request.form.get('password') ??
    (typeof request.headers['x-api-key'] === 'string' ? request.headers['x-api-key'] : undefined) ??
    decodeURIComponent(basic.slice(basic.indexOf(':') + 1));
  return { status: 400, body: { error: echoed, error_description: `you sent ${echoed}` } };
}

describe('No secret in any log line or error body (every flow, debug level)', () => {
  let oidc: OidcServer;
  let demo: DemoAuthServer;
  let scripted: ScriptedServer;
  let echo: ScriptedServer;
  let dynamo: EmbeddedDynamoDB;
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
    echo = await startScriptedServer(echoScript);
    // The table is the test's, so it can scan it afterwards.
    dynamo = await startEmbeddedDynamoDB();
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
        'client-credentials/echo': {
          grantType: 'client_credentials',
          tokenUrl: echo.url,
          clientId: 'echo',
          clientSecret: SECRETS.echoSecret,
          clientAuthentication: 'basic',
          allowedPrincipals: allowed,
        },
        'client-credentials/echo-header': {
          grantType: 'client_credentials',
          tokenUrl: echo.url,
          clientId: 'echo',
          clientSecret: SECRETS.echoSecret,
          clientAuthentication: 'body',
          additionalHeaders: { 'X-Api-Key': SECRETS.echoHeader },
          allowedPrincipals: allowed,
        },
        'password/echo': {
          grantType: 'password',
          tokenUrl: echo.url,
          clientId: 'echo',
          clientSecret: SECRETS.echoSecret,
          clientAuthentication: 'body',
          username: 'bob',
          password: SECRETS.echoPassword,
          allowedPrincipals: allowed,
        },
        'refresh-token/echo': {
          grantType: 'refresh_token',
          tokenUrl: echo.url,
          clientId: 'echo',
          clientSecret: SECRETS.echoSecret,
          clientAuthentication: 'body',
          refreshToken: SECRETS.echoRefresh,
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
      dynamo.endpoint,
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
    await Promise.all([oidc?.close(), demo?.close(), scripted?.close(), echo?.close(), dynamo?.close()]);
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
      await call('/tokens/client-credentials/echo'),
      await call('/tokens/client-credentials/echo-header'),
      await call('/tokens/password/echo'),
      await call('/tokens/refresh-token/echo'),
    ];
    await noteRefreshToken('refresh-token', 'ok');
    statuses.push(await call('/tokens/refresh-token/ok/refresh', { method: 'POST' }));
    await noteRefreshToken('refresh-token', 'ok');
    // A scheduled run (every second here) has refreshed the refresh-token connectors too.
    await eventually(() => /"message":"scheduled rotation finished"/.test(local.output()), 10_000);
    const output = local.output();
    const client = new DynamoDBClient({
      endpoint: dynamo.endpoint,
      region: 'us-east-1',
      credentials: localCredentials,
    });
    const { Items = [] } = await client.send(new ScanCommand({ TableName: 'token-vendor-tokens' }));
    client.destroy();
    const table = JSON.stringify(Items);

    // Assess
    expect(statuses).toEqual([
      200, 200, 200, 429, 502, 500, 502, 500, 200, 502, 200, 502, 403, 400, 502, 502, 502, 502, 200,
    ]);
    expect(output).toMatch(/"level":"(INFO|WARN|ERROR)"/);
    const values = [...Object.values(SECRETS), ...accessTokens, ...refreshTokens, CALLER.secretAccessKey];
    expect(refreshTokens.size).toBeGreaterThanOrEqual(3);
    for (const value of values) expect(output).not.toContain(value);
    // The table holds every kind of item (tokens, chains, failures) and no value in clear.
    expect(table).toMatch(/"pk":\{"S":"t#/);
    expect(table).toMatch(/chainToken/);
    expect(table).toMatch(/failureCode/);
    for (const value of values) expect(table).not.toContain(value);
    for (const body of bodies.filter((entry) => entry.status !== 200)) {
      for (const value of values) expect(body.text).not.toContain(value);
    }
  }, 60_000);
});
