import { createServer } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { TokenVendorClient, TokenVendorError } from '../../client/index.ts';
import { type LocalFixture, type LocalMode, prepareLocalFixture, startLocalMode } from '../support/local-mode.ts';
import { type OidcServer, startOidcServer } from '../support/oidc.ts';
import { type ScriptedServer, startScriptedServer } from '../support/scripted-server.ts';

const CALLER = {
  accessKeyId: 'AKIACLIENTTEST',
  secretAccessKey: 'client-test-signing-key',
  arn: 'arn:aws:sts::111122223333:assumed-role/workload/session-1',
};
const STRANGER = {
  accessKeyId: 'AKIACLIENTSTRANGER',
  secretAccessKey: 'stranger-signing-key',
  arn: 'arn:aws:iam::999988887777:user/stranger',
};
const CONNECTORS = [
  'read',
  'cache',
  'flight',
  'expiry',
  'scopes',
  'forced',
  'header',
  'retry',
  'twice',
  'herd',
  'stream',
];

describe('Class: TokenVendorClient (against local mode and oidc-provider)', () => {
  let oidc: OidcServer;
  let fixture: LocalFixture;
  let local: LocalMode;
  let downstream: ScriptedServer;
  /** Every call the client made to the vendor, as "METHOD path". */
  let vendorCalls: string[] = [];

  /** A client signing as `identity`, whose fetch records each call to the vendor. */
  const clientFor = (identity = CALLER, extra: { now?: () => number } = {}) =>
    new TokenVendorClient({
      endpoint: local.url,
      region: 'us-east-1',
      credentials: { accessKeyId: identity.accessKeyId, secretAccessKey: identity.secretAccessKey },
      fetch: (input, init) => {
        const url = new URL(String(input));
        if (url.origin === local.url) vendorCalls.push(`${init?.method ?? 'GET'} ${url.pathname}`);
        return fetch(input, init);
      },
      ...extra,
    });

  beforeAll(async () => {
    oidc = await startOidcServer({
      clients: [
        {
          client_id: 'client-lib',
          client_secret: 'client-lib-secret',
          token_endpoint_auth_method: 'client_secret_basic',
          grant_types: ['client_credentials'],
          scope: 'read write',
        },
      ],
    });
    const document = {
      grantType: 'client_credentials',
      tokenUrl: oidc.tokenUrl,
      clientId: 'client-lib',
      clientSecret: 'client-lib-secret',
      scope: 'read write',
      allowedPrincipals: ['arn:aws:iam::111122223333:role/workload'],
    };
    fixture = await prepareLocalFixture(
      {
        ...Object.fromEntries(CONNECTORS.map((id) => [`client-credentials/${id}`, document])),
        'client-credentials/custom-header': {
          ...document,
          headerAuthKey: 'X-Api-Key',
          headerAuthValuePattern: 'Token {{access_token}}',
        },
      },
      { CALLER, STRANGER },
    );
    local = await startLocalMode(fixture.env);
    downstream = await startScriptedServer(() => ({ body: {} }));
  });
  afterEach(() => {
    vendorCalls = [];
  });
  afterAll(async () => {
    await local?.stop();
    await downstream?.close();
    await oidc?.close();
    await fixture?.cleanup();
  });

  describe('Method: getToken', () => {
    it("returns the vendor's token with the connector's header", async () => {
      // Prepare
      vendorCalls = [];
      const client = clientFor();

      // Act
      const token = await client.getToken('client-credentials', 'read', { scope: 'read' });

      // Assess
      expect(token).toMatchObject({ token_type: 'Bearer', scope: 'read' });
      expect(token.header).toEqual({ name: 'Authorization', value: `Bearer ${token.access_token}` });
      expect(token.expires_in).toBeGreaterThan(3500);
      expect(vendorCalls).toEqual(['GET /tokens/client-credentials/read']);
    });

    it('serves a second call from its cache without asking the vendor', async () => {
      // Prepare
      const client = clientFor();
      const first = await client.getToken('client-credentials', 'cache');

      // Act
      const second = await client.getToken('client-credentials', 'cache');

      // Assess
      expect(second.access_token).toBe(first.access_token);
      expect(vendorCalls).toHaveLength(1);
    });

    it('sends one request for concurrent callers of the same connector and scope', async () => {
      // Prepare
      const client = clientFor();
      const tokenRequestsBefore = oidc.tokenRequests();

      // Act
      const tokens = await Promise.all(
        Array.from({ length: 8 }, () => client.getToken('client-credentials', 'flight', { scope: 'write read' })),
      );

      // Assess
      expect(new Set(tokens.map((token) => token.access_token)).size).toBe(1);
      expect(vendorCalls).toEqual(['GET /tokens/client-credentials/flight']);
      expect(oidc.tokenRequests() - tokenRequestsBefore).toBe(1);
    });

    it('asks the vendor again once expires_at minus minTtl has passed', async () => {
      // Prepare
      let now = Date.now();
      const client = clientFor(CALLER, { now: () => now });
      const token = await client.getToken('client-credentials', 'expiry', { minTtl: 120 });
      const expiresAt = Date.parse(token.expires_at);

      // Act
      now = expiresAt - 125_000;
      await client.getToken('client-credentials', 'expiry', { minTtl: 120 });
      const callsWhileFresh = vendorCalls.length;
      now = expiresAt - 119_000;
      await client.getToken('client-credentials', 'expiry', { minTtl: 120 });

      // Assess
      expect(callsWhileFresh).toBe(1);
      expect(vendorCalls).toHaveLength(2);
      expect(vendorCalls[1]).toBe('GET /tokens/client-credentials/expiry');
    });

    it('caches each scope set on its own, whatever the order of its scopes', async () => {
      // Prepare
      const client = clientFor();

      // Act
      const read = await client.getToken('client-credentials', 'scopes', { scope: 'read' });
      const both = await client.getToken('client-credentials', 'scopes', { scope: 'read write' });
      const bothAgain = await client.getToken('client-credentials', 'scopes', { scope: 'write  read' });

      // Assess
      expect(read.scope).toBe('read');
      expect(bothAgain.access_token).toBe(both.access_token);
      expect(vendorCalls).toHaveLength(2);
    });

    it('throws access_denied (403) to a caller the connector does not allow', async () => {
      // Act
      const error = await clientFor(STRANGER)
        .getToken('client-credentials', 'read')
        .catch((caught: unknown) => caught);

      // Assess
      expect(error).toBeInstanceOf(TokenVendorError);
      expect(error).toMatchObject({ code: 'access_denied', status: 403, retryable: false });
    });

    it('throws access_denied (403) for a connector that does not exist', async () => {
      // Act
      const error = await clientFor()
        .getToken('password', 'nothing-here')
        .catch((caught: unknown) => caught);

      // Assess
      expect(error).toMatchObject({ name: 'TokenVendorError', code: 'access_denied', status: 403 });
    });

    it("throws invalid_request (400) for a scope outside the connector's, as the vendor answers it", async () => {
      // Act
      const error = await clientFor()
        .getToken('client-credentials', 'read', { scope: 'admin' })
        .catch((caught: unknown) => caught);

      // Assess
      expect(error).toMatchObject({ code: 'invalid_request', status: 400 });
      expect((error as Error).message).toMatch(/not a subset/);
      expect(vendorCalls).toHaveLength(1);
    });

    it('refuses a malformed connector ID, family, scope or minTtl before sending anything', async () => {
      // Prepare
      const client = clientFor();

      // Act
      const errors = await Promise.all(
        [
          () => client.getToken('client-credentials', '../secrets'),
          () => client.getToken('implicit', 'read'),
          () => client.getToken('client-credentials', 'read', { scope: 'a"b' }),
          () => client.getToken('client-credentials', 'read', { minTtl: 1.5 }),
        ].map((call) => call().catch((caught: unknown) => caught)),
      );

      // Assess
      for (const error of errors) expect(error).toMatchObject({ code: 'invalid_request', status: 400 });
      expect(vendorCalls).toEqual([]);
    });

    it('throws vendor_unreachable when nothing answers at the endpoint', async () => {
      // Prepare
      const closedPort = await new Promise<number>((done) => {
        const server = createServer().listen(0, '127.0.0.1', () => {
          const { port } = server.address() as { port: number };
          server.close(() => done(port));
        });
      });
      const client = new TokenVendorClient({
        endpoint: `http://127.0.0.1:${closedPort}`,
        credentials: { accessKeyId: CALLER.accessKeyId, secretAccessKey: CALLER.secretAccessKey },
      });

      // Act
      const error = await client.getToken('client-credentials', 'read').catch((caught: unknown) => caught);

      // Assess
      expect(error).toMatchObject({ code: 'vendor_unreachable', status: 0, retryable: true });
      expect(((error as Error).cause as Error).cause).toMatchObject({ code: 'ECONNREFUSED' });
    });

    it('signs with the standard credential chain (environment variables) when given no credentials', async () => {
      // Prepare
      const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
      process.env.AWS_ACCESS_KEY_ID = CALLER.accessKeyId;
      process.env.AWS_SECRET_ACCESS_KEY = CALLER.secretAccessKey;
      try {
        // Act
        const token = await new TokenVendorClient({ endpoint: `${local.url}/`, region: 'us-east-1' }).getToken(
          'client-credentials',
          'read',
        );

        // Assess
        expect(token.token_type).toBe('Bearer');
      } finally {
        for (const [name, value] of [
          ['AWS_ACCESS_KEY_ID', saved.id],
          ['AWS_SECRET_ACCESS_KEY', saved.secret],
        ] as const) {
          if (value === undefined) delete process.env[name];
          else process.env[name] = value;
        }
      }
    });
  });

  describe('Method: authorizationHeader', () => {
    it("returns the connector's own header name and value pattern", async () => {
      // Act
      const header = await clientFor().authorizationHeader('client-credentials', 'custom-header');

      // Assess
      expect(header.name).toBe('X-Api-Key');
      expect(header.value).toMatch(/^Token \S+$/);
    });
  });

  describe('Method: forceRefresh', () => {
    it('returns a new token, caches it, and surfaces the rate limit as rate_limited with retryAfterSeconds', async () => {
      // Prepare
      const client = clientFor();
      const old = await client.getToken('client-credentials', 'forced');

      // Act
      const fresh = await client.forceRefresh('client-credentials', 'forced');
      const cached = await client.getToken('client-credentials', 'forced');
      const tooSoon = await client.forceRefresh('client-credentials', 'forced').catch((caught: unknown) => caught);

      // Assess
      expect(fresh.access_token).not.toBe(old.access_token);
      expect(cached.access_token).toBe(fresh.access_token);
      expect(tooSoon).toMatchObject({ code: 'rate_limited', status: 429, retryable: true });
      expect((tooSoon as TokenVendorError).retryAfterSeconds).toBeGreaterThanOrEqual(1);
      expect(vendorCalls).toEqual([
        'GET /tokens/client-credentials/forced',
        'POST /tokens/client-credentials/forced/refresh',
        'POST /tokens/client-credentials/forced/refresh',
      ]);
    });
  });

  describe('Method: fetch', () => {
    it("sends the connector's header to the downstream API", async () => {
      // Prepare
      downstream.setScript(() => ({ body: { ok: true } }));
      const client = clientFor();
      const token = await client.getToken('client-credentials', 'header');

      // Act
      const response = await client.fetch('client-credentials', 'header', downstream.url, {
        headers: { accept: 'application/json' },
      });

      // Assess
      expect(response.status).toBe(200);
      expect(await response.json()).toEqual({ ok: true });
      const seen = downstream.requests.at(-1);
      expect(seen?.headers.authorization).toBe(`Bearer ${token.access_token}`);
      expect(seen?.headers.accept).toBe('application/json');
    });

    it('on a 401 forces one refresh and retries once with the new token and the same body', async () => {
      // Prepare
      const client = clientFor();
      const stale = await client.getToken('client-credentials', 'retry');
      downstream.setScript((request) =>
        request.headers.authorization === `Bearer ${stale.access_token}` ? { status: 401 } : { body: { ok: true } },
      );
      const before = downstream.requests.length;

      // Act
      const response = await client.fetch('client-credentials', 'retry', downstream.url, {
        method: 'POST',
        body: new URLSearchParams({ order: '42' }),
      });

      // Assess
      expect(response.status).toBe(200);
      const sent = downstream.requests.slice(before);
      expect(sent).toHaveLength(2);
      expect(sent[1]?.headers.authorization).not.toBe(sent[0]?.headers.authorization);
      expect(sent.map((request) => request.form.get('order'))).toEqual(['42', '42']);
      expect(vendorCalls).toEqual([
        'GET /tokens/client-credentials/retry',
        'POST /tokens/client-credentials/retry/refresh',
      ]);
    });

    it('returns a second 401 as it is, after exactly one refresh', async () => {
      // Prepare
      downstream.setScript(() => ({ status: 401, body: { error: 'nope' } }));
      const client = clientFor();
      const before = downstream.requests.length;

      // Act
      const response = await client.fetch('client-credentials', 'twice', downstream.url);

      // Assess
      expect(response.status).toBe(401);
      expect(await response.json()).toEqual({ error: 'nope' });
      expect(downstream.requests.length - before).toBe(2);
      expect(vendorCalls.filter((call) => call.startsWith('POST'))).toHaveLength(1);
    });

    it('refreshes once for many concurrent calls refused with the same token', async () => {
      // Prepare
      const client = clientFor();
      const stale = await client.getToken('client-credentials', 'herd');
      downstream.setScript((request) =>
        request.headers.authorization === `Bearer ${stale.access_token}` ? { status: 401 } : { body: { ok: true } },
      );

      // Act
      const responses = await Promise.all(
        Array.from({ length: 5 }, () => client.fetch('client-credentials', 'herd', downstream.url)),
      );

      // Assess
      expect(responses.map((response) => response.status)).toEqual([200, 200, 200, 200, 200]);
      expect(vendorCalls.filter((call) => call.startsWith('POST'))).toHaveLength(1);
    });

    it('does not send a streamed body twice: the 401 is returned', async () => {
      // Prepare
      downstream.setScript(() => ({ status: 401 }));
      const client = clientFor();
      const before = downstream.requests.length;
      const body = new ReadableStream({
        start(controller) {
          controller.enqueue(new TextEncoder().encode('a=1'));
          controller.close();
        },
      });

      // Act
      const response = await client.fetch('client-credentials', 'stream', downstream.url, {
        method: 'POST',
        body,
        duplex: 'half',
      } as RequestInit);

      // Assess
      expect(response.status).toBe(401);
      expect(downstream.requests.length - before).toBe(1);
      expect(vendorCalls.filter((call) => call.startsWith('POST'))).toHaveLength(0);
    });
  });
});
