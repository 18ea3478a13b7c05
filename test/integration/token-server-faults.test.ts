import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CALLER_ROLE, type Harness, startHarness } from '../support/harness.ts';
import { type Script, type ScriptedServer, startScriptedServer, tokenAnswer } from '../support/scripted-server.ts';

const FAST = {
  TOKEN_VENDOR_ATTEMPT_TIMEOUT_SECONDS: '0.3',
  TOKEN_VENDOR_FETCH_DEADLINE_SECONDS: '2',
  TOKEN_VENDOR_FORCED_REFRESH_SECONDS: '0',
};

describe('Token-server faults', () => {
  let server: ScriptedServer;
  let harness: Harness;
  let connectorCount = 0;

  beforeAll(async () => {
    server = await startScriptedServer(() => tokenAnswer());
    harness = await startHarness();
  });
  afterAll(async () => {
    await harness.close();
    await server.close();
  });

  /** A new connector on the scripted server, with this script from now on. */
  const scenario = async (script: Script, extra: object = {}) => {
    connectorCount += 1;
    const id = `fault-${connectorCount}`;
    await harness.writeConnector('client-credentials', id, {
      grantType: 'client_credentials',
      tokenUrl: server.url,
      clientId: 'c',
      clientSecret: 's',
      clientAuthentication: 'body',
      allowedPrincipals: [CALLER_ROLE],
      ...extra,
    });
    const before = server.requests.length;
    server.setScript((request, index) => script(request, index - before));
    return { id, requests: () => server.requests.length - before };
  };

  it('retries a 5xx and succeeds', async () => {
    // Prepare
    const { id, requests } = await scenario((_request, index) =>
      index === 0 ? { status: 502, body: 'bad gateway' } : tokenAnswer(),
    );

    // Act
    const token = await harness.vendor({ env: FAST }).vend('client-credentials', id);

    // Assess
    expect(token.access_token).toBeTruthy();
    expect(requests()).toBe(2);
  });

  it('honours Retry-After on a 429 before trying again', async () => {
    // Prepare
    const times: number[] = [];
    const { id } = await scenario((_request, index) => {
      times.push(Date.now());
      return index === 0
        ? { status: 429, headers: { 'retry-after': '1' }, body: { error: 'slow_down' } }
        : tokenAnswer();
    });

    // Act
    const token = await harness.vendor({ env: FAST }).vend('client-credentials', id);

    // Assess
    expect(token.access_token).toBeTruthy();
    expect((times[1] ?? 0) - (times[0] ?? 0)).toBeGreaterThanOrEqual(950);
  });

  it('answers 503 with Retry-After when the server asks for longer than the deadline allows', async () => {
    // Prepare
    const { id, requests } = await scenario(() => ({
      status: 429,
      headers: { 'retry-after': '120' },
      body: { error: 'slow_down' },
    }));

    // Act
    const failure = await harness
      .vendor({ env: FAST })
      .vend('client-credentials', id)
      .catch((error: unknown) => error);

    // Assess: a 429 is "rate-limiting", not a refusal of the grant.
    expect(failure).toMatchObject({ code: 'upstream_unavailable', status: 503 });
    expect(requests()).toBe(1);
  });

  it.each([
    ['a connection reset', { reset: true }],
    ['a server that never answers', { hang: true }],
  ])('answers %s with 503 within the deadline after bounded retries', async (_name, answer) => {
    // Prepare
    const { id, requests } = await scenario(() => answer);
    const started = Date.now();

    // Act
    const failure = await harness
      .vendor({ env: FAST })
      .vend('client-credentials', id)
      .catch((error: unknown) => error);

    // Assess
    expect(failure).toMatchObject({ code: 'upstream_unavailable', status: 503 });
    expect(requests()).toBe(3);
    expect(Date.now() - started).toBeLessThan(2_500);
  });

  it('answers a DNS failure with 503', async () => {
    // Prepare: .invalid never resolves (RFC 6761).
    const { id } = await scenario(() => tokenAnswer(), { tokenUrl: 'https://token-server.invalid/oauth/token' });

    // Act
    const failure = await harness
      .vendor({ env: FAST })
      .vend('client-credentials', id)
      .catch((error: unknown) => error);

    // Assess
    expect(failure).toMatchObject({ code: 'upstream_unavailable', status: 503 });
  });

  it('never retries invalid_grant or invalid_client', async () => {
    // Prepare
    const { id, requests } = await scenario(() => ({ status: 400, body: { error: 'invalid_grant' } }));

    // Act
    const failure = await harness
      .vendor({ env: FAST })
      .vend('client-credentials', id)
      .catch((error: unknown) => error);

    // Assess
    expect(failure).toMatchObject({ code: 'upstream_rejected', upstreamError: 'invalid_grant' });
    expect(requests()).toBe(1);
  });

  it('serves the still-valid cached token while the refresh fails', async () => {
    // Prepare: a 100 s token, then the server goes down.
    const { id } = await scenario(() => tokenAnswer({ expires_in: 100 }));
    const vendor = harness.vendor({ env: FAST });
    const cached = await vendor.vend('client-credentials', id);
    server.setScript(() => ({ status: 503, body: 'down' }));

    // Act: a caller needing 90 s would normally force a fetch.
    const served = await harness.vendor({ env: FAST }).vend('client-credentials', id, { minTtl: '90' });

    // Assess
    expect(served.access_token).toBe(cached.access_token);
  });

  it('does not serve a token a forced refresh discarded, even while the server is down', async () => {
    // Prepare
    const { id } = await scenario(() => tokenAnswer());
    const vendor = harness.vendor({ env: FAST });
    await vendor.vend('client-credentials', id);
    server.setScript(() => ({ status: 503, body: 'down' }));

    // Act
    const forced = await vendor.vend('client-credentials', id, { force: true }).catch((error: unknown) => error);
    const after = await harness
      .vendor({ env: FAST })
      .vend('client-credentials', id)
      .catch((error: unknown) => error);

    // Assess
    expect(forced).toMatchObject({ code: 'upstream_unavailable', status: 503 });
    expect(after).toMatchObject({ code: 'upstream_unavailable', status: 503 });
  });

  it('opens a per-connector circuit after repeated outages, so callers stop adding load', async () => {
    // Prepare
    const { id, requests } = await scenario(() => ({ status: 500, body: 'down' }));
    const env = { ...FAST, TOKEN_VENDOR_MAX_ATTEMPTS: '1' };

    // Act: three failing vends from three containers, then more while the circuit is open.
    for (let index = 0; index < 3; index += 1) {
      await harness
        .vendor({ env })
        .vend('client-credentials', id)
        .catch(() => undefined);
    }
    const beforeOpen = requests();
    const whileOpen = await Promise.all(
      [1, 2, 3, 4, 5].map(() =>
        harness
          .vendor({ env })
          .vend('client-credentials', id)
          .catch((error: unknown) => error),
      ),
    );

    // Assess
    expect(beforeOpen).toBe(3);
    expect(requests()).toBe(3);
    for (const failure of whileOpen) {
      expect(failure).toMatchObject({ code: 'upstream_unavailable', status: 503 });
      expect((failure as { retryAfterSeconds?: number }).retryAfterSeconds).toBeGreaterThanOrEqual(1);
    }
  });

  it('answers an endless answer as an invalid answer after reading 64 KiB of it, asking once', async () => {
    // Prepare: a server that streams a 300 MB chunked "token" until the client hangs up, counting what it sent.
    const ANSWER_BYTES = 300 * 1024 * 1024;
    const chunk = Buffer.alloc(64 * 1024, 'a');
    let requestsSeen = 0;
    let sent = 0;
    const hungUp = Promise.withResolvers<void>();
    const endless = createServer(async (incoming, outgoing) => {
      requestsSeen += 1;
      incoming.resume();
      outgoing.once('close', () => hungUp.resolve());
      outgoing.writeHead(200, { 'content-type': 'application/json' });
      outgoing.write('{"access_token":"');
      while (sent < ANSWER_BYTES && !outgoing.destroyed) {
        sent += chunk.byteLength;
        if (!outgoing.write(chunk)) await Promise.race([once(outgoing, 'drain'), once(outgoing, 'close')]);
      }
      outgoing.end('"}');
    });
    endless.listen(0, '127.0.0.1');
    await once(endless, 'listening');
    const { port } = endless.address() as AddressInfo;
    const { id } = await scenario(() => tokenAnswer(), { tokenUrl: `http://127.0.0.1:${port}/token` });

    try {
      // Act
      const failure = await harness
        .vendor({ env: FAST })
        .vend('client-credentials', id)
        .catch((error: unknown) => error);
      await hungUp.promise;

      // Assess: not retried (not transient), and the client stopped reading long before the end.
      expect(failure).toMatchObject({ code: 'upstream_invalid_response', status: 502 });
      expect(requestsSeen).toBe(1);
      expect(sent).toBeLessThan(ANSWER_BYTES / 10);
    } finally {
      endless.closeAllConnections();
      endless.close();
    }
  });
});
