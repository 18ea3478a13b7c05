import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliIo, main as cli } from '../../cli/main.ts';
import { type LocalMode, signedFetch, startLocalMode } from '../support/local-mode.ts';
import { type OidcServer, startOidcServer } from '../support/oidc.ts';

const run = promisify(execFile);
const NODE = join(import.meta.dirname, '..', '..', 'node_modules', '.bin', 'node');
const MAIN = join(import.meta.dirname, '..', '..', 'local', 'main.ts');

/** Runs local mode to its exit (one that fails to start). */
const startAndFail = (env: Record<string, string>, cwd: string) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((done) => {
    execFile(NODE, [MAIN], { cwd, env: { ...process.env, ...env }, timeout: 60_000 }, (error, stdout, stderr) => {
      done({ code: error === null ? 0 : Number(error.code), stdout, stderr });
    });
  });

/** The CLI in-process, in `cwd`, with nothing of this process's environment. */
async function operator(argv: string[], cwd: string, env: Record<string, string> = {}) {
  let stdout = '';
  let stderr = '';
  const io: CliIo = {
    stdout: (text) => {
      stdout += text;
    },
    stderr: (text) => {
      stderr += text;
    },
    env,
    cwd,
  };
  return { code: await cli(argv, io), stdout, stderr };
}

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
    const badMinTtl = await signedFetch(`${local.url}/tokens/client-credentials/crm?minTtl=soon`, ALICE);
    const badScope = await signedFetch(`${local.url}/tokens/client-credentials/crm?scope=admin`, ALICE);
    const broken = await signedFetch(`${local.url}/tokens/client-credentials/broken`, ALICE);

    // Assess
    expect([badId.status, badMinTtl.status, badScope.status]).toEqual([400, 400, 400]);
    expect(((await badId.json()) as { error: string }).error).toBe('invalid_request');
    expect(broken.status).toBe(500);
    const body = await broken.text();
    expect(JSON.parse(body)).toMatchObject({ error: 'connector_misconfigured' });
    expect(body).toContain('clientSecrett');
    expect(body).not.toContain('typo-secret-value');
  });

  it('answers an unknown family 400 invalid_request once signed, as the deployed API does (CONTRACT §3)', async () => {
    // Act
    const signed = await signedFetch(`${local.url}/tokens/implicit/crm`, ALICE);
    const forced = await signedFetch(`${local.url}/tokens/implicit/crm/refresh`, ALICE, { method: 'POST' });
    const unsigned = await fetch(`${local.url}/tokens/implicit/crm`);

    // Assess
    for (const response of [signed, forced]) {
      expect(response.status).toBe(400);
      expect(response.headers.get('cache-control')).toBe('no-store');
      expect(await response.json()).toEqual({
        error: 'invalid_request',
        error_description: 'Unknown grant family in the path.',
      });
    }
    expect(unsigned.status).toBe(403);
  });

  it.each([
    ['GET on …/refresh', 'GET', '/tokens/client-credentials/crm/refresh'],
    ['POST on a token', 'POST', '/tokens/client-credentials/crm'],
    ['a path outside /tokens', 'GET', '/health'],
    ['a path too deep', 'GET', '/tokens/client-credentials/crm/refresh/now'],
    // URLs resolve dot segments, encoded or not, before anything is sent: what is left names no connector.
    ['a dot-dot connector ID', 'GET', '/tokens/client-credentials/..'],
    ['an encoded dot-dot segment', 'GET', '/tokens/client-credentials/%2E%2E'],
  ] as const)(
    'answers a route API Gateway would not match (%s) as the deployed API does: 403, signed or not',
    async (_name, method, path) => {
      // Act
      const signed = await signedFetch(`${local.url}${path}`, ALICE, { method });
      const unsigned = await fetch(`${local.url}${path}`, { method });

      // Assess: MISSING_AUTHENTICATION_TOKEN through the construct's gateway response (infra GATEWAY_ERRORS).
      for (const response of [signed, unsigned]) {
        expect(response.status).toBe(403);
        expect(response.headers.get('cache-control')).toBe('no-store');
        expect(await response.json()).toEqual({
          error: 'access_denied',
          error_description: 'Missing Authentication Token',
        });
      }
    },
  );

  it.each([
    ['an encoded slash', '/tokens/client-credentials/crm%2F..%2Fcrm'],
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

      // Act: curl's own SigV4 implementation, not ours; the JWT bearer demo signs its assertion with its own key.
      const vend = (family: string) =>
        run('curl', ['-s', '--aws-sigv4', sigv4, '--user', user, `${demo.url}/tokens/${family}/demo`]);
      const bodies = [await vend('client-credentials'), await vend('jwt-bearer')].map(
        ({ stdout }) => JSON.parse(stdout) as { access_token: string; token_type: string },
      );

      // Assess
      for (const body of bodies) {
        expect(body.token_type).toBe('Bearer');
        expect(body.access_token.length).toBeGreaterThan(10);
      }
      expect(demo.output()).toMatch(/DEMO MODE/);
    } finally {
      await demo.stop();
      await rm(cwd, { recursive: true, force: true });
    }
  });

  describe('a second npm start, and the CLI beside a running one', () => {
    let cwd: string;
    let demo: LocalMode;
    const env = { TOKEN_VENDOR_STATE_DIR: join('.token-vendor', 'state') };
    const demoDir = () => join(cwd, '.token-vendor', 'state', 'demo-connectors');

    beforeAll(async () => {
      cwd = await mkdtemp(join(tmpdir(), 'token-vendor-demo-'));
      demo = await startLocalMode(env, cwd);
    });
    afterAll(async () => {
      await demo?.stop();
      await rm(cwd, { recursive: true, force: true });
    });

    it('leaves the running instance and its demo connectors alone, on a busy port or a free one', async () => {
      // Prepare
      const before = await readFile(join(demoDir(), 'refresh-token', 'demo.json'), 'utf8');
      const port = new URL(demo.url).port;

      // Act
      const busyPort = await startAndFail({ ...env, PORT: port }, cwd);
      const freePort = await startAndFail({ ...env, PORT: '0' }, cwd);
      const after = await readFile(join(demoDir(), 'refresh-token', 'demo.json'), 'utf8');
      const vended = await signedFetch(`${demo.url}/tokens/refresh-token/demo`, {
        accessKeyId: 'AKIALOCALDEVELOPER',
        secretAccessKey: 'local-dev-only',
      });

      // Assess
      for (const second of [busyPort, freePort]) {
        expect(second.code).toBe(1);
        expect(second.stderr).toContain(`another local mode (pid ${demo.child.pid}, ${demo.url}) is running`);
      }
      expect(after).toBe(before);
      expect(vended.status).toBe(200);
    });

    it("shows the running instance's health from its embedded DynamoDB, and lists its connectors", async () => {
      // Prepare: a refused vend leaves a health record in the table.
      await signedFetch(`${demo.url}/tokens/client-credentials/demo`, {
        accessKeyId: 'AKIALOCALDEVELOPER',
        secretAccessKey: 'local-dev-only',
      });

      // Act
      const status = await operator(['status', '--dir', demoDir(), '--json'], cwd);
      const list = await operator(['connectors', 'list'], cwd);
      const elsewhere = await operator(['status', '--dir', join(cwd, 'elsewhere')], cwd);

      // Assess
      expect(demo.output()).toMatch(/token table token-vendor-tokens in DynamoDB at http:\/\/127\.0\.0\.1:\d+/);
      expect(status.stderr).toBe('');
      expect(JSON.parse(status.stdout)).toEqual(
        ['client-credentials/demo', 'jwt-bearer/demo', 'password/demo', 'refresh-token/demo'].map((connector) =>
          expect.objectContaining({ connector, state: 'ok' }),
        ),
      );
      expect(list.stdout).toBe('client-credentials/demo\njwt-bearer/demo\npassword/demo\nrefresh-token/demo\n');
      expect(elsewhere.code).toBe(1);
    });

    it('puts a first connector of your own into ./connectors, saying local mode serves it from its next start', async () => {
      // Prepare
      const document = {
        grantType: 'client_credentials',
        tokenUrl: 'https://login.example.com/oauth2/token',
        clientId: 'mine',
        clientSecret: 'made-up.secret.1234',
        allowedPrincipals: ['111122223333'],
      };
      await writeFile(join(cwd, 'mine.json'), JSON.stringify(document));

      // Act
      const put = await operator(['connectors', 'put', 'client-credentials/mine', '--file', 'mine.json'], cwd);

      // Assess
      expect(put.code).toBe(0);
      expect(put.stdout).toContain(join(cwd, 'connectors', 'client-credentials', 'mine.json'));
      expect(put.stderr).toContain('restart it (npm start)');
      await rm(join(cwd, 'connectors'), { recursive: true });
    });
  });
});
