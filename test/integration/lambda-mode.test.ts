import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  eventually,
  type LocalFixture,
  type LocalMode,
  prepareLocalFixture,
  signedFetch,
  startLocalMode,
} from '../support/local-mode.ts';
import { type ScriptedServer, startScriptedServer, tokenAnswer } from '../support/scripted-server.ts';

const CALLER = {
  accessKeyId: 'AKIALAMBDAMODE',
  secretAccessKey: 'lambda-mode-secret',
  arn: 'arn:aws:iam::111122223333:user/lambda-mode',
};

/** Waits until a token's refresh point has passed for every process: past 90 % of its servable life. */
async function pastRefreshPoint(expiresAt: string, lifetimeMs: number, minTtlMs: number): Promise<void> {
  const servableUntil = Date.parse(expiresAt) - Math.min(minTtlMs, lifetimeMs / 2);
  const issuedAt = Date.parse(expiresAt) - lifetimeMs;
  const due = issuedAt + (servableUntil - issuedAt) * 0.9;
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, due - Date.now())));
}

/**
 * 4-second tokens; callers need 1 s of validity; the memory re-reads the table after 1 s; half of the 3 s a token
 * serves is kept for its refresh (the default 6 % would leave a due token servable for a few tens of milliseconds).
 */
const SHORT = {
  TOKEN_VENDOR_DEFAULT_MIN_TTL_SECONDS: '1',
  TOKEN_VENDOR_MEMORY_STALENESS_SECONDS: '1',
  TOKEN_VENDOR_REFRESH_MARGIN_SHARE: '0.5',
};

describe('Local mode with Lambda semantics (TOKEN_VENDOR_LAMBDA=1)', () => {
  let server: ScriptedServer;
  let fixture: LocalFixture;
  const started: LocalMode[] = [];

  beforeAll(async () => {
    server = await startScriptedServer(() => tokenAnswer({ expires_in: 4 }));
    const connector = (extra: object = {}) => ({
      grantType: 'client_credentials',
      tokenUrl: server.url,
      clientId: 'c',
      clientSecret: 's',
      allowedPrincipals: ['111122223333'],
      ...extra,
    });
    fixture = await prepareLocalFixture(
      {
        'client-credentials/handed-over': connector(),
        'client-credentials/frozen': connector(),
        'client-credentials/dead-server': connector({ tokenUrl: 'http://127.0.0.1:9/token', prewarm: true }),
      },
      { CALLER },
    );
  });
  afterAll(async () => {
    await Promise.all(started.map((process) => process.stop()));
    await fixture?.cleanup();
    await server?.close();
  });

  const start = async (env: Record<string, string> = {}) => {
    const process = await startLocalMode({ ...fixture.env, TOKEN_VENDOR_LAMBDA: '1', ...SHORT, ...env });
    started.push(process);
    return process;
  };
  const vend = async (process: LocalMode, connectorId: string) => {
    const response = await signedFetch(`${process.url}/tokens/client-credentials/${connectorId}`, CALLER);
    return { status: response.status, body: (await response.json()) as { access_token: string; expires_at: string } };
  };

  it('hands a due token to the refresher: the caller is served at once, and the refresh needs no more traffic', async () => {
    // Prepare
    const local = await start();
    const first = await vend(local, 'handed-over');
    const before = server.requests.length;
    await pastRefreshPoint(first.body.expires_at, 4_000, 1_000);

    // Act: one vend of the due token, then nothing.
    const due = await vend(local, 'handed-over');
    await eventually(() => server.requests.length > before, 3_000);
    // Once this container's memory looks at the table again (1 s), it serves the refresher's token.
    let after = await vend(local, 'handed-over');
    for (let tries = 0; tries < 40 && after.body.access_token === first.body.access_token; tries += 1) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      after = await vend(local, 'handed-over');
    }

    // Assess: the due vend got the cached token; the refresh ran in the refresher's own invocation.
    expect(first.status).toBe(200);
    expect(due.body.access_token).toBe(first.body.access_token);
    expect(server.requests.length - before).toBe(1);
    expect(after.body.access_token).not.toBe(first.body.access_token);
    expect(local.output()).toMatch(/"message":"demanded refresh finished"[^\n]*"function_name":"token-vendor-rotate"/);
    // The refresher's log line carries the handing-over vend's API Gateway request ID.
    const handedOver = local
      .output()
      .split('\n')
      .find((line) => line.includes('"message":"demanded refresh finished"'));
    expect(JSON.parse(handedOver ?? '{}')).toMatchObject({ correlation_id: expect.stringMatching(/\S/) });
  }, 30_000);

  it('freezes a container after its response: work it left running waits for its next invocation', async () => {
    // Prepare: refresh ahead detached in the vending container, as a long-lived server would do it.
    const local = await start({ TOKEN_VENDOR_REFRESH_AHEAD: 'background' });
    const first = await vend(local, 'frozen');
    await pastRefreshPoint(first.body.expires_at, 4_000, 1_000);
    const before = server.requests.length;

    // Act: the due vend starts the refresh and answers; the container is frozen with the refresh in it.
    await vend(local, 'frozen');
    const whileFrozen = await eventually(() => server.requests.length > before, 1_500).then(
      () => 'ran',
      () => 'frozen',
    );
    await vend(local, 'frozen');
    await eventually(() => server.requests.length > before, 3_000);

    // Assess: only the next invocation thawed it.
    expect(whileFrozen).toBe('frozen');
    expect(server.requests.length - before).toBe(1);
  }, 30_000);

  it('runs the schedule as its own function, and a connector whose health changes does not crash the run', async () => {
    // Prepare: a prewarm connector whose token server is down turns from ok to failing on the first run.
    const local = await start({
      TOKEN_VENDOR_ROTATE_INTERVAL_SECONDS: '1',
      TOKEN_VENDOR_ATTEMPT_TIMEOUT_SECONDS: '0.5',
    });

    // Act
    await eventually(() => /"message":"scheduled rotation finished"/.test(local.output()), 15_000);

    // Assess: the real Powertools logger logged the change from the rotate function's container.
    expect(local.output()).toMatch(/"message":"connector health changed"[^\n]*"to":"failing"/);
    expect(local.output()).toMatch(/"function_name":"token-vendor-rotate"/);
    expect(local.output()).not.toMatch(/scheduled rotation failed/);
  }, 30_000);
});

describe('Local mode keeps its state on disk (TOKEN_VENDOR_STATE_DIR)', () => {
  let server: ScriptedServer;
  let fixture: LocalFixture;

  beforeAll(async () => {
    server = await startScriptedServer(() => tokenAnswer({ expires_in: 3600 }));
    fixture = await prepareLocalFixture(
      {
        'client-credentials/kept': {
          grantType: 'client_credentials',
          tokenUrl: server.url,
          clientId: 'c',
          clientSecret: 's',
          allowedPrincipals: ['111122223333'],
        },
      },
      { CALLER },
    );
  });
  afterAll(async () => {
    await fixture?.cleanup();
    await server?.close();
  });

  it('serves the token it cached before a restart, without asking the token server again', async () => {
    // Prepare: the embedded DynamoDB (no AWS_ENDPOINT_URL_DYNAMODB) with its data in the fixture's folder.
    const { env } = fixture;
    const stateDir = `${fixture.dir}/state`;
    const first = await startLocalMode({ ...env, TOKEN_VENDOR_STATE_DIR: stateDir });
    const before = await signedFetch(`${first.url}/tokens/client-credentials/kept`, CALLER);
    const token = ((await before.json()) as { access_token: string }).access_token;
    await first.stop();

    // Act
    const second = await startLocalMode({ ...env, TOKEN_VENDOR_STATE_DIR: stateDir });
    const after = await signedFetch(`${second.url}/tokens/client-credentials/kept`, CALLER);
    const again = ((await after.json()) as { access_token: string }).access_token;
    await second.stop();

    // Assess
    expect(before.status).toBe(200);
    expect(again).toBe(token);
    expect(server.requests).toHaveLength(1);
  }, 30_000);
});
