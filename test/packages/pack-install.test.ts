import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiGateway, listen, type ProxyHandler } from '../../local/api-gateway.ts';

// What a workload does: `npm pack` both packages, install the tarballs into a project of its own outside the
// repository, and run them from its node_modules on Node 24 (the project's) and Node 20 (the system's).
const ROOT = resolve(import.meta.dirname, '..', '..');
const NODE_24 = join(ROOT, 'node_modules', 'node', 'bin');
const NODE_20 = '/usr/bin';
const SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const CALLER = {
  accessKeyId: 'AKIAPACKAGETEST',
  secretAccessKey: 'made-up.signing.key.1234',
  arn: 'arn:aws:iam::111122223333:role/workload',
};

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function run(command: string, args: string[], cwd: string, env: Record<string, string> = {}): Promise<Run> {
  return new Promise((done) => {
    execFile(
      command,
      args,
      { cwd, env: { HOME: process.env.HOME ?? '/root', PATH: SYSTEM_PATH, ...env }, timeout: 240_000 },
      (error, stdout, stderr) => done({ code: error === null ? 0 : Number(error.code ?? 1), stdout, stderr }),
    );
  });
}

/** A PATH whose first `node` is the given one, as a workload's shell would have. */
const pathWith = (nodeDir: string) => `${nodeDir}:${SYSTEM_PATH}`;

const WORKLOAD = `
import { TokenVendorClient, TokenVendorError } from '@token-vendor/client';

const vendor = new TokenVendorClient({
  endpoint: process.env.TOKEN_VENDOR_ENDPOINT,
  credentials: { accessKeyId: process.env.CALLER_KEY_ID, secretAccessKey: process.env.CALLER_SECRET },
});
const header = await vendor.authorizationHeader('client-credentials', 'crm');
const cached = await vendor.getToken('client-credentials', 'crm');
let refused;
try {
  await vendor.getToken('client-credentials', 'unknown');
} catch (error) {
  refused = error instanceof TokenVendorError ? error.code : String(error);
}
console.log(JSON.stringify({ node: process.version, header, cached: cached.access_token, refused }));
`;

const TYPED_WORKLOAD = `
import { TokenVendorClient, type TokenResponse, type TokenVendorErrorCode } from '@token-vendor/client';

const vendor = new TokenVendorClient({ endpoint: 'http://127.0.0.1:3000' });
export const token: Promise<TokenResponse> = vendor.getToken('client-credentials', 'crm', { minTtl: 300 });
export const code: TokenVendorErrorCode = 'upstream_rejected';
// @ts-expect-error the options are typed, so a wrong one is a compile error (the types are not \`any\`)
vendor.getToken('client-credentials', 'crm', { minTtl: 'soon' });
`;

describe('Packages: the client and the CLI, packed, installed into a workload project and run', () => {
  let work: string;
  let app: string;
  let gateway: Server;
  let endpoint: string;
  let calls = 0;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'token-vendor-packages-'));
    app = join(work, 'app');
    await mkdir(app);
    // The vendor as a workload sees it: SigV4 verified exactly as local mode (and API Gateway) does.
    const token: ProxyHandler = async (event) => {
      calls += 1;
      if (event.pathParameters?.connectorId !== 'crm') {
        return { statusCode: 403, body: JSON.stringify({ error: 'access_denied', error_description: 'Denied.' }) };
      }
      return {
        statusCode: 200,
        headers: { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' },
        body: JSON.stringify({
          access_token: 'made-up.access.token.1234',
          token_type: 'Bearer',
          expires_in: 3600,
          expires_at: new Date(Date.now() + 3_600_000).toISOString(),
          scope: 'read',
          header: { name: 'Authorization', value: 'Bearer made-up.access.token.1234' },
        }),
      };
    };
    gateway = createApiGateway({
      handlers: { 'client-credentials': token, password: token, 'refresh-token': token, 'jwt-bearer': token },
      principals: { [CALLER.accessKeyId]: { secretAccessKey: CALLER.secretAccessKey, arn: CALLER.arn } },
      region: 'us-east-1',
    });
    endpoint = `http://127.0.0.1:${await listen(gateway, 0)}`;

    // Act (shared by every test below): pack both (prepack builds them), install the tarballs.
    const packed = await run('npm', ['pack', './client', './cli', '--pack-destination', work, '--json'], ROOT, {
      PATH: pathWith(NODE_24),
    });
    expect(packed.stderr.includes('npm error') ? packed.stderr : '').toBe('');
    const tarballs = (JSON.parse(packed.stdout) as { filename: string }[]).map((entry) => join(work, entry.filename));
    await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'workload', private: true, type: 'module' }));
    const installed = await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', ...tarballs], app, {
      PATH: pathWith(NODE_20),
    });
    expect(installed.code, installed.stderr).toBe(0);
    await writeFile(join(app, 'workload.mjs'), WORKLOAD);
    await writeFile(join(app, 'typed.ts'), TYPED_WORKLOAD);
  }, 300_000);

  afterAll(async () => {
    gateway?.close();
    await rm(work, { recursive: true, force: true });
  });

  it('leaves the repository as it was: no build output next to the sources after packing', async () => {
    // Assess
    expect(await readdir(join(ROOT, 'client'))).not.toContain('dist');
    expect(await readdir(join(ROOT, 'cli'))).not.toContain('dist');
  });

  it.each([
    ['Node 24', NODE_24, /^v24\./],
    ['Node 20', NODE_20, /^v20\./],
  ])(
    'imports the client from node_modules on %s, signs with SigV4, caches and types its errors',
    async (_name, nodeDir, version) => {
      // Prepare
      const before = calls;

      // Act
      const result = await run(join(nodeDir, 'node'), ['workload.mjs'], app, {
        TOKEN_VENDOR_ENDPOINT: endpoint,
        CALLER_KEY_ID: CALLER.accessKeyId,
        CALLER_SECRET: CALLER.secretAccessKey,
      });

      // Assess
      expect(result.stderr).toBe('');
      const output = JSON.parse(result.stdout) as { node: string; header: unknown; cached: string; refused: string };
      expect(output.node).toMatch(version);
      expect(output.header).toEqual({ name: 'Authorization', value: 'Bearer made-up.access.token.1234' });
      expect(output.cached).toBe('made-up.access.token.1234');
      expect(output.refused).toBe('access_denied');
      // One request for the token, one for the refusal: the second getToken came from memory.
      expect(calls - before).toBe(2);
    },
  );

  it('ships declarations a TypeScript workload compiles against (NodeNext resolution, strict)', async () => {
    // Act
    const result = await run(
      process.execPath,
      [
        join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'),
        '--noEmit',
        '--strict',
        '--module',
        'nodenext',
        '--moduleResolution',
        'nodenext',
        '--target',
        'es2022',
        '--types',
        'node',
        '--typeRoots',
        join(ROOT, 'node_modules', '@types'),
        'typed.ts',
      ],
      app,
    );

    // Assess
    expect(result.stdout + result.stderr).toBe('');
    expect(result.code).toBe(0);
  });

  it('brings no zod and no TypeScript source into the workload, and bundles small', async () => {
    // Prepare
    const installed = join(app, 'node_modules', '@token-vendor', 'client');
    const files = (await readdir(installed, { recursive: true })).map(String);

    // Act
    const bundle = await build({
      entryPoints: [join(app, 'workload.mjs')],
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      minify: true,
      write: false,
      metafile: true,
      logLevel: 'silent',
    });
    const bytes = bundle.outputFiles[0]?.contents.byteLength ?? 0;

    // Assess
    expect(await readdir(join(app, 'node_modules'))).not.toContain('zod');
    expect(Object.keys(bundle.metafile.inputs).filter((input) => input.includes('/zod/'))).toEqual([]);
    expect(files.filter((file) => file.endsWith('.ts') && !file.endsWith('.d.ts'))).toEqual([]);
    process.stdout.write(`client bundle (minified, with its dependencies): ${(bytes / 1024).toFixed(0)} KiB\n`);
    expect(bytes).toBeLessThan(600 * 1024);
  });

  it.each([
    ['Node 24', NODE_24, /^v24\./],
    ['Node 20', NODE_20, /^v20\./],
  ])('runs the CLI through npx on %s: --version, validate, and a token from the vendor', async (_name, nodeDir) => {
    // Prepare
    const env = { PATH: pathWith(nodeDir) };
    await writeFile(
      join(app, 'crm.json'),
      JSON.stringify({
        grantType: 'client_credentials',
        tokenUrl: 'https://login.example.com/oauth2/token',
        clientId: 'crm',
        clientSecret: 'made-up.secret.1234',
        allowedPrincipals: ['111122223333'],
      }),
    );

    // Act
    const version = await run('npx', ['--offline', '--no', '--', 'token-vendor', '--version'], app, env);
    const validate = await run(
      'npx',
      ['--offline', '--no', '--', 'token-vendor', 'connectors', 'validate', 'crm.json'],
      app,
      env,
    );
    const token = await run(
      'npx',
      ['--offline', '--no', '--', 'token-vendor', 'token', 'get', 'client-credentials/crm'],
      app,
      {
        ...env,
        TOKEN_VENDOR_ENDPOINT: endpoint,
        AWS_ACCESS_KEY_ID: CALLER.accessKeyId,
        AWS_SECRET_ACCESS_KEY: CALLER.secretAccessKey,
      },
    );

    // Assess
    const { version: expected } = JSON.parse(await readFile(join(ROOT, 'cli', 'package.json'), 'utf8')) as {
      version: string;
    };
    expect(version).toMatchObject({ code: 0, stdout: `${expected}\n`, stderr: '' });
    expect(validate).toMatchObject({ code: 0, stdout: 'crm.json: valid client_credentials connector\n' });
    expect(token).toMatchObject({ code: 0, stdout: 'made-up.access.token.1234\n' });
  });
});
