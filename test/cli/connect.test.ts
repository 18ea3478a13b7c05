import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { join, resolve } from 'node:path';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listen, planRedirect } from '../../cli/loopback.ts';
import { type CliIo, EXIT, main } from '../../cli/main.ts';
import { type EmbeddedDynamoDB, startEmbeddedDynamoDB } from '../../local/dynamodb.ts';
import {
  type LocalFixture,
  type LocalMode,
  prepareLocalFixture,
  signedFetch,
  startLocalMode,
} from '../support/local-mode.ts';
import { type OidcServer, startOidcServer } from '../support/oidc.ts';

const ROOT = resolve(import.meta.dirname, '..', '..');
const NODE = resolve(ROOT, 'node_modules', '.bin', 'node');
/** Debian's chromium, installed by .ci/run: never a browser download. */
const CHROMIUM = '/usr/bin/chromium';
const CALLER = {
  accessKeyId: 'AKIACONNECTTEST',
  secretAccessKey: 'connect-test-signing-key',
  arn: 'arn:aws:iam::111122223333:user/operator',
};
/** Every wait in these tests is bounded by this, well under the test's own timeout. */
const STEP_MS = 20_000;

/** Rejects once `ms` have passed, naming what it waited for: no test hangs on a browser or a child process. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

interface ConnectRun {
  /** The first line of standard output: the authorization URL. */
  readonly url: Promise<string>;
  readonly exit: Promise<{ code: number | null; stdout: string; stderr: string }>;
  readonly child: ChildProcess;
}

/** `token-vendor connect … --no-browser` as a user runs it: a process of its own (Node runs the TypeScript CLI). */
function startConnect(args: string[]): ConnectRun {
  const child = spawn(NODE, [join(ROOT, 'cli', 'main.ts'), 'connect', ...args, '--no-browser', '--timeout', '60'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  const url = new Promise<string>((resolveUrl, reject) => {
    child.stdout?.on('data', (chunk: Buffer) => {
      stdout += chunk.toString('utf8');
      const newline = stdout.indexOf('\n');
      if (newline >= 0) resolveUrl(stdout.slice(0, newline));
    });
    child.once('exit', () => reject(new Error(`connect exited before printing a URL:\n${stderr}`)));
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8');
  });
  const exit = new Promise<{ code: number | null; stdout: string; stderr: string }>((done) => {
    child.once('exit', (code) => done({ code, stdout, stderr }));
  });
  // A test that failed before the exit was awaited must not leave an unhandled rejection behind.
  url.catch(() => undefined);
  return { url, exit, child };
}

/** Runs the CLI in-process (for what needs no browser). */
async function cli(argv: string[], env: Record<string, string>, onStdout?: (text: string) => void) {
  let stdout = '';
  let stderr = '';
  const io: CliIo = {
    stdout: (text) => {
      stdout += text;
      onStdout?.(text);
    },
    stderr: (text) => {
      stderr += text;
    },
    env,
    cwd: ROOT,
  };
  const code = await main(argv, io);
  return { code, stdout, stderr };
}

describe('CLI: token-vendor connect, with a real browser against oidc-provider (CONTRACT §5)', () => {
  let browser: Browser;
  let oidc: OidcServer;
  let dynamo: EmbeddedDynamoDB;
  let fixture: LocalFixture;
  let local: LocalMode;
  let operatorEnv: Record<string, string>;
  const running: ChildProcess[] = [];

  const app = { clientId: 'tv-app', clientSecret: 'made-up.app.secret' };
  const document = (overrides: Record<string, unknown> = {}) => ({
    grantType: 'refresh_token',
    tokenUrl: '',
    authorizationUrl: '',
    authorizationScope: 'openid offline_access read',
    ...app,
    allowedPrincipals: [CALLER.arn],
    ...overrides,
  });
  const path = (id: string) => join(fixture.connectorsDir, 'refresh-token', `${id}.json`);
  const readDocument = async (id: string) => JSON.parse(await readFile(path(id), 'utf8')) as Record<string, unknown>;
  const vend = (id: string) => signedFetch(`${local.url}/tokens/refresh-token/${id}`, CALLER);
  const status = async () =>
    JSON.parse((await cli(['status', '--json', '--dir', fixture.connectorsDir], operatorEnv)).stdout) as {
      connector: string;
      state: string;
    }[];
  const stateOf = async (id: string) => (await status()).find((row) => row.connector === `refresh-token/${id}`)?.state;

  const connect = (id: string, ...extra: string[]) => {
    const run = startConnect([`refresh-token/${id}`, '--dir', fixture.connectorsDir, ...extra]);
    running.push(run.child);
    return run;
  };

  /** A fresh browser profile (no session) on the authorization URL, through the development sign-in page. */
  async function signIn(url: string): Promise<Page> {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.setDefaultTimeout(STEP_MS);
    await page.goto(url);
    await page.fill('input[name="login"]', 'operator');
    await page.fill('input[name="password"]', 'any-password');
    await page.click('button[type="submit"]');
    await page.waitForSelector('input[name="prompt"][value="consent"]', { state: 'attached' });
    return page;
  }

  /** Signs in, consents, and follows the redirect to the CLI's listener; resolves with the CLI's exit. */
  async function authorize(run: ConnectRun, tamper: (url: URL) => void = () => undefined) {
    const url = new URL(await within(run.url, STEP_MS, 'the authorization URL'));
    tamper(url);
    const page = await signIn(url.toString());
    await page.click('button[type="submit"]');
    const exit = await within(run.exit, STEP_MS, 'connect to exit');
    const text = await page.textContent('body');
    await page.context().close();
    return { ...exit, url, page: text ?? '' };
  }

  beforeAll(async () => {
    // CI installs Debian's chromium (.ci/run): missing, these tests fail rather than pass by skipping.
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install chromium (.ci/run does)`);
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, timeout: STEP_MS });
    oidc = await startOidcServer({
      interactions: true,
      clients: [
        {
          client_id: app.clientId,
          client_secret: app.clientSecret,
          token_endpoint_auth_method: 'client_secret_basic',
          grant_types: ['authorization_code', 'refresh_token'],
        },
        {
          // Never issued refresh tokens: the refresh grant is not among its grants.
          client_id: 'tv-no-refresh',
          client_secret: 'made-up.no-refresh.secret',
          token_endpoint_auth_method: 'client_secret_post',
          grant_types: ['authorization_code'],
        },
      ],
    });
    const at = { tokenUrl: oidc.tokenUrl, authorizationUrl: oidc.authorizationUrl };
    dynamo = await startEmbeddedDynamoDB();
    fixture = await prepareLocalFixture(
      {
        'refresh-token/crm': document(at),
        'refresh-token/broken': document({ ...at, refreshToken: 'made-up.revoked.refresh.1' }),
        'refresh-token/denied': document(at),
        'refresh-token/tampered': document(at),
        'refresh-token/quiet': document({
          ...at,
          clientId: 'tv-no-refresh',
          clientSecret: 'made-up.no-refresh.secret',
          clientAuthentication: 'body',
        }),
        'refresh-token/wrong-secret': document({ ...at, clientSecret: 'made-up.wrong.secret' }),
        'refresh-token/manual': document(at),
      },
      { CALLER },
      dynamo.endpoint,
    );
    local = await startLocalMode({ ...fixture.env, TOKEN_VENDOR_MAX_ATTEMPTS: '1' });
    operatorEnv = {
      AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint,
      AWS_ACCESS_KEY_ID: 'local',
      AWS_SECRET_ACCESS_KEY: 'local',
    };
  }, 60_000);

  afterAll(async () => {
    for (const child of running) if (child.exitCode === null && child.signalCode === null) child.kill();
    await browser?.close();
    await local?.stop();
    await oidc?.close();
    await dynamo?.close();
    await fixture?.cleanup();
  });

  it('connects a connector that awaits its first authorization: status and vends before, a token after', async () => {
    // Prepare
    const original = await readDocument('crm');
    const before = await vend('crm');
    const beforeBody = (await before.json()) as Record<string, unknown>;
    const stateBefore = await stateOf('crm');
    const detail = (await cli(['status', '--dir', fixture.connectorsDir], operatorEnv)).stdout;

    // Act
    const run = connect('crm', '--param', 'prompt=consent');
    const result = await authorize(run);
    const after = await vend('crm');

    // Assess
    expect(before.status).toBe(502);
    expect(beforeBody).toMatchObject({ error: 'upstream_rejected', upstream_error: 'invalid_grant' });
    expect(beforeBody.error_description).toMatch(/authorization/);
    expect(stateBefore).toBe('needs_reauthorization');
    expect(detail).toMatch(/refresh-token\/crm\s+needs_reauthorization\s+invalid_grant: run token-vendor connect/);

    expect(result.code).toBe(EXIT.ok);
    expect(result.stdout).toBe(`${result.url.toString()}\n`);
    expect(result.url.searchParams.get('code_challenge_method')).toBe('S256');
    expect(result.url.searchParams.getAll('prompt')).toEqual(['consent']);
    expect(result.url.searchParams.get('scope')).toBe('openid offline_access read');
    expect(result.stderr).toMatch(/Stored a new refresh token for refresh-token\/crm in .*crm\.json/);
    expect(result.page).toMatch(/stored a new refresh token/);
    const stored = await readDocument('crm');
    const { refreshToken, ...rest } = stored;
    expect(typeof refreshToken).toBe('string');
    expect(rest).toEqual(original);
    expect(result.stdout + result.stderr).not.toContain(refreshToken as string);
    expect(after.status).toBe(200);
    expect(((await after.json()) as { access_token: string }).access_token).toBeTruthy();
    expect(await stateOf('crm')).toBe('ok');
  }, 90_000);

  it('brings back a connector in needs_reauthorization', async () => {
    // Prepare: the server does not know its refresh token, so the chain is broken.
    const before = await vend('broken');
    const stateBefore = await stateOf('broken');

    // Act
    const result = await authorize(connect('broken', '--param', 'prompt=consent'));
    const after = await vend('broken');

    // Assess
    expect(before.status).toBe(502);
    expect(stateBefore).toBe('needs_reauthorization');
    expect(result.code).toBe(EXIT.ok);
    expect((await readDocument('broken')).refreshToken).not.toBe('made-up.revoked.refresh.1');
    expect(after.status).toBe(200);
    expect(await stateOf('broken')).toBe('ok');
  }, 90_000);

  it('exits 1 naming access_denied when the consent is refused, storing nothing', async () => {
    // Prepare
    const original = await readFile(path('denied'), 'utf8');
    const run = connect('denied', '--param', 'prompt=consent');
    const page = await signIn(await within(run.url, STEP_MS, 'the authorization URL'));

    // Act: "[ Cancel ]" on the consent page.
    await page.click('text=[ Cancel ]');
    const result = await within(run.exit, STEP_MS, 'connect to exit');
    const text = await page.textContent('body');
    await page.context().close();

    // Assess
    expect(result.code).toBe(EXIT.failed);
    expect(result.stderr).toMatch(/the authorization server answered access_denied .*nothing was stored/);
    expect(text).toMatch(/Authorization failed/);
    expect(await readFile(path('denied'), 'utf8')).toBe(original);
  }, 90_000);

  it('exits 1 for a redirect whose state was tampered with, storing nothing', async () => {
    // Prepare
    const original = await readFile(path('tampered'), 'utf8');

    // Act
    const result = await authorize(connect('tampered', '--param', 'prompt=consent'), (url) => {
      url.searchParams.set('state', `${url.searchParams.get('state')}x`);
    });

    // Assess
    expect(result.code).toBe(EXIT.failed);
    expect(result.stderr).toMatch(/refused the redirect: the redirect carries a state this flow did not send/);
    expect(await readFile(path('tampered'), 'utf8')).toBe(original);
  }, 90_000);

  it('exits 1 when the server issues no refresh token, suggesting how to ask for one', async () => {
    // Prepare
    const original = await readFile(path('quiet'), 'utf8');

    // Act
    const result = await authorize(connect('quiet', '--param', 'prompt=consent'));

    // Assess
    expect(result.code).toBe(EXIT.failed);
    expect(result.stderr).toMatch(/answer has no refresh token; nothing was stored/);
    expect(result.stderr).toMatch(/offline_access/);
    expect(result.stderr).toMatch(/--param access_type=offline/);
    expect(await readFile(path('quiet'), 'utf8')).toBe(original);
  }, 90_000);

  it('exits 1 when the code exchange fails (the client secret is wrong), storing nothing', async () => {
    // Prepare
    const original = await readFile(path('wrong-secret'), 'utf8');

    // Act
    const result = await authorize(connect('wrong-secret', '--param', 'prompt=consent'));

    // Assess
    expect(result.code).toBe(EXIT.failed);
    expect(result.stderr).toMatch(/the code exchange at http:\/\/127\.0\.0\.1:\d+\/token failed: upstream_rejected/);
    expect(result.stderr).toMatch(/invalid_client/);
    expect(result.stderr).not.toContain('made-up.wrong.secret');
    expect(await readFile(path('wrong-secret'), 'utf8')).toBe(original);
  }, 90_000);

  describe('without a browser', () => {
    const inProcess = (id: string, extra: string[], onStdout?: (text: string) => void) =>
      cli(['connect', `refresh-token/${id}`, '--dir', fixture.connectorsDir, '--no-browser', ...extra], {}, onStdout);

    it('exits 1 when no browser comes back within --timeout', async () => {
      // Act
      const result = await inProcess('manual', ['--timeout', '1']);

      // Assess
      expect(result.code).toBe(EXIT.failed);
      expect(result.stderr).toMatch(/no redirect reached http:\/\/127\.0\.0\.1:\d+\/callback within 1 s/);
    });

    it('exits 1 when --port is in use', async () => {
      // Prepare
      const busy: Server = createServer();
      await new Promise<void>((done) => busy.listen(0, '127.0.0.1', done));
      const { port } = busy.address() as { port: number };

      // Act
      const result = await inProcess('manual', ['--port', String(port)]).finally(
        () => new Promise((done) => busy.close(done)),
      );

      // Assess
      expect(result.code).toBe(EXIT.failed);
      expect(result.stderr).toMatch(new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}: the port is in use`));
    });

    it('exits 1 for a redirect without state, and answers other paths with 404', async () => {
      // Prepare
      let answered: Promise<number[]> = Promise.resolve([]);

      // Act: the URL is printed once the listener listens.
      const result = await inProcess('manual', ['--timeout', '20'], (text) => {
        const redirectUri = new URL(text.trim()).searchParams.get('redirect_uri') ?? '';
        answered = Promise.all([
          fetch(new URL('/favicon.ico', redirectUri)).then((response) => response.status),
          fetch(`${redirectUri}?code=made-up.code`).then((response) => response.status),
        ]);
      });

      // Assess
      expect(result.code).toBe(EXIT.failed);
      expect(result.stderr).toMatch(/refused the redirect: the redirect carries no state/);
      expect(await answered).toEqual([404, 400]);
    });

    it('sends each authorization parameter once: --param replaces, a repeated or reserved one is refused', async () => {
      // Prepare: the authorization URL already carries a parameter that --param replaces.
      await writeFile(
        path('manual'),
        JSON.stringify(
          document({ tokenUrl: oidc.tokenUrl, authorizationUrl: `${oidc.authorizationUrl}?prompt=login&x=1` }),
        ),
      );
      let url: URL | undefined;

      // Act
      const replaced = await inProcess('manual', ['--timeout', '1', '--param', 'prompt=consent'], (text) => {
        url = new URL(text.trim());
      });
      const usage = await Promise.all([
        inProcess('manual', ['--param', 'prompt=consent', '--param', 'prompt=login']),
        inProcess('manual', ['--param', 'state=mine']),
        inProcess('manual', ['--param', 'redirect_uri=http://127.0.0.1/x']),
        inProcess('manual', ['--param', 'novalue']),
        cli(['connect', 'client-credentials/crm', '--dir', fixture.connectorsDir], {}),
      ]);

      // Assess
      expect(replaced.code).toBe(EXIT.failed);
      expect(url?.searchParams.getAll('prompt')).toEqual(['consent']);
      expect(url?.searchParams.getAll('x')).toEqual(['1']);
      expect(usage.map((run) => run.code)).toEqual([EXIT.usage, EXIT.usage, EXIT.usage, EXIT.usage, EXIT.usage]);
      expect(usage[0]?.stderr).toMatch(/--param prompt given twice/);
      expect(usage[2]?.stderr).toMatch(/use --redirect-uri/);
    });

    it('exits 1 for a connector without authorizationUrl', async () => {
      // Prepare
      await writeFile(
        path('manual'),
        JSON.stringify({ ...document({ tokenUrl: oidc.tokenUrl }), authorizationUrl: undefined, refreshToken: 'x.y' }),
      );

      // Act
      const result = await inProcess('manual', []);

      // Assess
      expect(result.code).toBe(EXIT.failed);
      expect(result.stderr).toMatch(/has no authorizationUrl/);
    });
  });
});

describe('Function: planRedirect and listen (the loopback redirect URI, RFC 8252 §7.3)', () => {
  it('listens on 127.0.0.1 at a free port by default, and on the exact URI given', async () => {
    // Act
    const defaults = await listen(planRedirect(undefined, undefined));
    const pinned = planRedirect('http://localhost:8400/oauth/callback', undefined);
    const bare = await listen(planRedirect('http://localhost/', undefined));

    // Assess
    try {
      expect(defaults.redirectUri).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/callback$/);
      expect(pinned).toMatchObject({ port: 8400, path: '/oauth/callback', portFromListener: false });
      expect(bare.redirectUri).toMatch(/^http:\/\/localhost:\d+\/$/);
      expect((await fetch(`${bare.redirectUri}favicon.ico`)).status).toBe(404);
    } finally {
      await defaults.close();
      await bare.close();
    }
  });

  it('refuses what it could not listen for', () => {
    // Act / Assess
    expect(() => planRedirect('https://tunnel.example/cb', undefined)).toThrow(/needs --port/);
    expect(planRedirect('https://tunnel.example/cb', '8400')).toMatchObject({ port: 8400, hosts: ['127.0.0.1'] });
    expect(() => planRedirect('http://127.0.0.1:8400/cb', '8401')).toThrow(/differ/);
    expect(() => planRedirect('http://127.0.0.1/cb#x', undefined)).toThrow(/fragment/);
    expect(() => planRedirect(undefined, '70000')).toThrow(/--port/);
  });
});
