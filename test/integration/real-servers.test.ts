import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errorFields } from '../../shared/core/errors.ts';
import { CALLER_ROLE, CapturedLog, type Harness, manualClock, startHarness } from '../support/harness.ts';
import { type ScriptedServer, startScriptedServer, tokenAnswer } from '../support/scripted-server.ts';

/**
 * Token servers as providers document them, on their bad days, and hostile: each a loopback server that behaves so.
 */
describe('Real token servers', () => {
  let harness: Harness;
  const servers: ScriptedServer[] = [];

  beforeAll(async () => {
    harness = await startHarness();
  });
  afterAll(async () => {
    await Promise.all(servers.map((server) => server.close()));
    await harness?.close();
  });

  const serve = async (script: Parameters<typeof startScriptedServer>[0]) => {
    const server = await startScriptedServer(script);
    servers.push(server);
    return server;
  };
  const connector = (tokenUrl: string, extra: object = {}) => ({
    grantType: 'client_credentials',
    tokenUrl,
    clientId: 'c',
    clientSecret: 'quirk-secret-value',
    clientAuthentication: 'body',
    allowedPrincipals: [CALLER_ROLE],
    ...extra,
  });
  const failure = (promise: Promise<unknown>) => promise.then(() => undefined).catch((error: unknown) => error);

  it('takes expires_in 0 (Mailchimp: never expires) as the default lifetime, and caches the token', async () => {
    // Prepare
    const server = await serve(() => tokenAnswer({ expires_in: 0 }));
    await harness.writeConnector(
      'client-credentials',
      'never-expires',
      connector(server.url, { defaultExpiresIn: 7200 }),
    );
    const vendor = harness.vendor();

    // Act
    const first = await vendor.vend('client-credentials', 'never-expires');
    const second = await vendor.vend('client-credentials', 'never-expires');

    // Assess
    expect(first.expires_in).toBeGreaterThan(7100);
    expect(second.access_token).toBe(first.access_token);
    expect(server.requests).toHaveLength(1);
  });

  it('keeps every container away from a throttled server until its Retry-After, answering 503 meanwhile', async () => {
    // Prepare
    const server = await serve(() => ({ status: 429, headers: { 'retry-after': '20' }, body: { error: 'slow_down' } }));
    await harness.writeConnector('client-credentials', 'throttled', connector(server.url));
    const containers = [harness.vendor(), harness.vendor()];

    // Act: eight vends from two containers.
    const answers = [];
    for (let round = 0; round < 4; round += 1) {
      for (const container of containers)
        answers.push(await failure(container.vend('client-credentials', 'throttled')));
    }

    // Assess
    expect(server.requests).toHaveLength(1);
    for (const answer of answers) {
      expect(answer).toMatchObject({ code: 'upstream_unavailable', status: 503 });
      expect((answer as { retryAfterSeconds: number }).retryAfterSeconds).toBeGreaterThan(15);
      expect((answer as { retryAfterSeconds: number }).retryAfterSeconds).toBeLessThanOrEqual(20);
    }
  });

  it.each([
    ['a control character', { additionalHeaders: { 'X-Tenant': 'acme\u0007' } }, 'additionalHeaders.X-Tenant'],
    ['a character beyond Latin-1', { additionalHeaders: { 'X-Tenant': 'acme€' } }, 'additionalHeaders.X-Tenant'],
    [
      'a framing header',
      { additionalHeaders: { 'Transfer-Encoding': 'chunked' } },
      'additionalHeaders.Transfer-Encoding',
    ],
    ['a framing header as the callers’ header', { headerAuthKey: 'Host' }, 'headerAuthKey'],
    [
      'a secret that is not a field value once filled in',
      { clientSecret: 'line\nbreak', additionalHeaders: { 'X-Secret': '{{clientSecret}}' } },
      'additionalHeaders.X-Secret',
    ],
    [
      'a header the vendor sets itself',
      { additionalHeaders: { Authorization: 'Basic x' } },
      'additionalHeaders.Authorization',
    ],
    [
      'a parameter the vendor sets itself',
      { additionalRequestData: { client_secret: 'x' } },
      'additionalRequestData.client_secret',
    ],
  ])(
    'refuses %s as a misconfigured connector, naming the field, without calling the server',
    async (_name, extra, field) => {
      // Prepare
      const server = await serve(() => tokenAnswer());
      const id = `bad-header-${servers.length}`;
      await harness.writeConnector('client-credentials', id, connector(server.url, extra));

      // Act
      const answer = await failure(harness.vendor().vend('client-credentials', id));

      // Assess
      expect(answer).toMatchObject({ code: 'connector_misconfigured', status: 500 });
      expect((answer as Error).message).toContain(field);
      expect(server.requests).toHaveLength(0);
      // A misconfiguration is not an outage: no circuit opens against the server.
      const { failure: recorded } = await harness.store.getState(`client-credentials/${id}`);
      expect(recorded?.openUntil).toBeUndefined();
      expect(recorded?.code).not.toBe('upstream_unavailable');
    },
  );

  it.each([
    ['an access token with a line break', { access_token: 'abc\r\nX-Evil: 1', token_type: 'Bearer' }],
    ['an access token with a bidirectional override', { access_token: 'abc\u202Edef', token_type: 'Bearer' }],
    ['a token type with a NUL', { access_token: 'abc', token_type: 'Bearer\u0000' }],
  ])('refuses %s as an invalid response', async (_name, body) => {
    // Prepare
    const server = await serve(() => ({ body: { ...body, expires_in: 3600 } }));
    const id = `bad-token-${servers.length}`;
    await harness.writeConnector('client-credentials', id, connector(server.url));

    // Act
    const answer = await failure(harness.vendor().vend('client-credentials', id));

    // Assess
    expect(answer).toMatchObject({ code: 'upstream_invalid_response', status: 502 });
  });

  it('tells callers the granted scope: narrower, broader (and logged), or the requested one when none is said', async () => {
    // Prepare
    const granted: Record<string, string | undefined> = { read: 'read admin', 'read write': 'read' };
    const server = await serve((request) => tokenAnswer({ scope: granted[request.form.get('scope') ?? ''] }));
    await harness.writeConnector('client-credentials', 'scoped', connector(server.url, { scope: 'read write delete' }));
    const log = new CapturedLog();
    const vendor = harness.vendor({ log });

    // Act
    const broader = await vendor.vend('client-credentials', 'scoped', { scope: 'read' });
    const narrower = await vendor.vend('client-credentials', 'scoped', { scope: 'read write' });
    const unsaid = await vendor.vend('client-credentials', 'scoped', { scope: 'delete' });

    // Assess
    expect(broader.scope).toBe('read admin');
    expect(
      log.lines.some((line) => line.includes('granted more scope than was asked') && line.includes('read admin')),
    ).toBe(true);
    expect(narrower.scope).toBe('read');
    expect(unsaid.scope).toBe('delete');
  });

  it('does not serve a token another container discarded, even while the server is down', async () => {
    // Prepare: a 10-second token in two containers that share the table and a clock.
    let down = false;
    const server = await serve(() =>
      down ? { status: 503, body: { error: 'temporarily_unavailable' } } : tokenAnswer({ expires_in: 10 }),
    );
    await harness.writeConnector('client-credentials', 'discarded', connector(server.url));
    const clock = manualClock();
    const reader = harness.vendor({ now: clock.now, env: { TOKEN_VENDOR_FORCED_REFRESH_SECONDS: '0' } });
    const refresher = harness.vendor({ now: clock.now, env: { TOKEN_VENDOR_FORCED_REFRESH_SECONDS: '0' } });
    const held = await reader.vend('client-credentials', 'discarded');
    down = true;
    // Past half the lifetime: the reader must fetch, and falls back on what it still holds when the fetch fails.
    clock.advance(6_000);

    // Act
    const forced = await failure(refresher.vend('client-credentials', 'discarded', { force: true }));
    const answer = await failure(reader.vend('client-credentials', 'discarded'));

    // Assess
    expect(held.access_token).toBeTruthy();
    expect(forced).toMatchObject({ code: 'upstream_unavailable' });
    expect(answer).toMatchObject({ code: 'upstream_unavailable', status: 503 });
  });
});

describe('Function: errorFields', () => {
  it('logs where a JSON document broke, never what it holds', () => {
    // Prepare
    let parseError: unknown;
    try {
      // V8 quotes the start of the text it could not parse.
      JSON.parse('json-fragment-secret-31f9 is not JSON');
    } catch (error) {
      parseError = error;
    }

    // Act
    const fields = errorFields(parseError);

    // Assess
    expect(String(parseError)).toContain('json-fragm');
    expect(JSON.stringify(fields)).not.toContain('json-fragm');
    expect(fields).toMatchObject({ errorName: 'SyntaxError' });
  });
});
