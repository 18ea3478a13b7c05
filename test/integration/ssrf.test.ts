import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tokenFunction } from '../../functions/lambda/entry.ts';
import { createHttpClient, type Resolver } from '../../shared/adapters/http-client.ts';
import { DestinationRefusedError, refuseUrl } from '../../shared/domain/network-policy.ts';
import type { HttpClient } from '../../shared/ports/http.ts';
import { CALLER, CALLER_ROLE, type Harness, startHarness } from '../support/harness.ts';
import { type ScriptedServer, startScriptedServer, tokenAnswer } from '../support/scripted-server.ts';

const AWS = { allowLoopback: false, allowPrivate: false };
const LOCAL = { allowLoopback: true, allowPrivate: true };

/** A resolver with fixed answers, standing in for DNS that points a name at a forbidden address. */
const fakeDns: Resolver = (hostname, callback) => {
  const answers: Record<string, string[]> = {
    'metadata.example': ['169.254.169.254'],
    'rebind.example': ['93.184.216.34', '127.0.0.1'],
    'mapped.example': ['::ffff:169.254.169.254'],
    'loopback.example': ['127.0.0.1'],
  };
  const addresses = answers[hostname];
  if (addresses === undefined) return callback(Object.assign(new Error('ENOTFOUND'), { code: 'ENOTFOUND' }), []);
  return callback(
    null,
    addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 })),
  );
};

const post = (http: HttpClient, url: string) =>
  http({ url, method: 'POST', headers: {}, body: '', signal: AbortSignal.timeout(2_000) });

describe('Function: createHttpClient (SSRF guard)', () => {
  let server: ScriptedServer;

  beforeAll(async () => {
    server = await startScriptedServer(() => tokenAnswer());
  });
  afterAll(async () => {
    await server.close();
  });

  it.each([
    'http://token.example.com/token',
    'https://127.0.0.1/token',
    'https://127.0.0.1:2773/2018-06-01/runtime',
    'https://169.254.169.254/latest/meta-data/',
    'https://169.254.170.2/v2/credentials',
    'https://[fd00:ec2::254]/latest/meta-data/',
    'https://0.0.0.0/token',
    'https://[::ffff:169.254.169.254]/',
    'https://[::ffff:127.0.0.1]/',
    'https://2852039166/',
    'https://0xa9.0xfe.0xa9.0xfe/',
    'https://[::1]/token',
    'https://10.0.0.8/token',
    'https://192.168.1.1/token',
    'https://[64:ff9b::a9fe:a9fe]/',
  ])('refuses %s in AWS before any connection', async (url) => {
    // Act
    const failure = await post(createHttpClient(AWS, fakeDns), url).catch((error: unknown) => error);

    // Assess
    expect(failure).toBeInstanceOf(DestinationRefusedError);
  });

  it.each([
    'https://metadata.example/token',
    'https://rebind.example/token',
    'https://mapped.example/token',
    'https://loopback.example/token',
  ])('refuses %s on the address it resolves to', async (url) => {
    // Act
    const failure = await post(createHttpClient(AWS, fakeDns), url).catch((error: unknown) => error);

    // Assess
    expect(JSON.stringify(failure)).toBeDefined();
    let cause: unknown = failure;
    while (cause instanceof Error && !(cause instanceof DestinationRefusedError)) cause = cause.cause;
    expect(cause).toBeInstanceOf(DestinationRefusedError);
  });

  it('allows private ranges only when the deployment allows them', () => {
    // Act: decided without sending anything; this machine may not send traffic to private ranges.
    const inAws = refuseUrl(new URL('https://10.0.0.8/token'), AWS);
    const allowed = refuseUrl(new URL('https://10.0.0.8/token'), { allowLoopback: false, allowPrivate: true });
    const metadataStill = refuseUrl(new URL('https://169.254.169.254/'), { allowLoopback: true, allowPrivate: true });

    // Assess
    expect(inAws).toBeDefined();
    expect(allowed).toBeUndefined();
    expect(metadataStill).toBeDefined();
  });

  it('lets local mode call http on loopback, by address and by name, and nothing forbidden', async () => {
    // Prepare
    const http = createHttpClient(LOCAL);

    // Act
    const byAddress = await post(http, server.url);
    const byName = await post(http, server.url.replace('127.0.0.1', 'localhost'));
    const metadata = await post(http, 'http://169.254.169.254/latest/').catch((error: unknown) => error);
    const plainRemote = await post(http, 'http://token.example.com/').catch((error: unknown) => error);

    // Assess
    expect(byAddress.status).toBe(200);
    expect(byName.status).toBe(200);
    expect(metadata).toBeInstanceOf(DestinationRefusedError);
    expect(plainRemote).toBeInstanceOf(DestinationRefusedError);
  });
});

describe('Integration: token URLs the vendor may not call', () => {
  let redirecting: ScriptedServer;
  let target: ScriptedServer;
  let harness: Harness;

  beforeAll(async () => {
    target = await startScriptedServer(() => tokenAnswer());
    redirecting = await startScriptedServer(() => ({ status: 307, headers: { location: target.url } }));
    harness = await startHarness();
  });
  afterAll(async () => {
    await harness.close();
    await redirecting.close();
    await target.close();
  });

  const connector = (tokenUrl: string) => ({
    grantType: 'client_credentials',
    tokenUrl,
    clientId: 'c',
    clientSecret: 'the-secret',
    clientAuthentication: 'body',
    allowedPrincipals: [CALLER_ROLE],
  });

  it('never follows a redirect, which would carry the credentials elsewhere', async () => {
    // Prepare
    await harness.writeConnector('client-credentials', 'redirect', connector(redirecting.url));

    // Act
    const failure = await harness
      .vendor()
      .vend('client-credentials', 'redirect')
      .catch((error: unknown) => error);

    // Assess
    expect(failure).toMatchObject({ code: 'upstream_invalid_response', status: 502 });
    expect(target.requests).toHaveLength(0);
  });

  it('answers a metadata token URL with connector_misconfigured naming tokenUrl', async () => {
    // Prepare
    await harness.writeConnector(
      'client-credentials',
      'metadata',
      connector('http://169.254.169.254/latest/api/token'),
    );

    // Act
    const failure = await harness
      .vendor()
      .vend('client-credentials', 'metadata')
      .catch((error: unknown) => error);

    // Assess
    expect(failure).toMatchObject({ code: 'connector_misconfigured', status: 500 });
    expect((failure as Error).message).toContain('tokenUrl');
  });

  it('refuses a name that resolves to a forbidden address at connect time, without retrying', async () => {
    // Prepare
    await harness.writeConnector('client-credentials', 'rebind', connector('https://metadata.example/token'));
    const vendor = harness.vendor({ http: createHttpClient(LOCAL, fakeDns) });

    // Act
    const failure = await vendor.vend('client-credentials', 'rebind').catch((error: unknown) => error);

    // Assess
    expect(failure).toMatchObject({ code: 'connector_misconfigured', status: 500 });
  });
});

describe('Who decides which token URLs are allowed', () => {
  let harness: Harness;

  beforeAll(async () => {
    harness = await startHarness();
  });
  afterAll(async () => {
    await harness.close();
  });

  it('refuses a loopback token URL in a function whose environment names a connectors folder', async () => {
    // Prepare: a function built from its environment alone, as a Lambda is; the folder does not make it local mode.
    await harness.writeConnector('client-credentials', 'loopback', {
      grantType: 'client_credentials',
      tokenUrl: 'http://127.0.0.1:9/token',
      clientId: 'c',
      clientSecret: 's',
      allowedPrincipals: [CALLER_ROLE],
    });
    const handler = tokenFunction(
      'client-credentials',
      {
        TOKEN_VENDOR_TABLE: harness.tableName,
        TOKEN_VENDOR_CONNECTORS_DIR: harness.connectorsDir,
        AWS_LAMBDA_FUNCTION_NAME: 'token-vendor-client-credentials',
        // Never contacted: no token is cached, and the token URL is refused before one could be fetched.
        TOKEN_VENDOR_TOKEN_KEY_ID: 'arn:aws:kms:us-east-1:000000000000:key/00000000-0000-0000-0000-000000000000',
        POWERTOOLS_METRICS_DISABLED: 'true',
      },
      // The table it reads first (empty for this connector); the network policy still comes from the environment.
      { store: harness.store },
    );
    const event = {
      httpMethod: 'GET',
      resource: '/tokens/client-credentials/{connectorId}',
      pathParameters: { connectorId: 'loopback' },
      queryStringParameters: null,
      multiValueQueryStringParameters: null,
      requestContext: { identity: { userArn: CALLER.arn, accountId: CALLER.accountId } },
    };

    // Act
    const response = await handler(
      event as never,
      {
        awsRequestId: 'request-1',
        functionName: 'token-vendor-client-credentials',
        getRemainingTimeInMillis: () => 29_000,
      } as never,
    );

    // Assess
    expect(response.statusCode).toBe(500);
    expect(JSON.parse(response.body)).toMatchObject({ error: 'connector_misconfigured' });
    expect(JSON.parse(response.body).error_description).toContain('tokenUrl');
  });
});
