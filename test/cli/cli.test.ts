import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliIo, EXIT, main } from '../../cli/main.ts';
import { type EmbeddedDynamoDB, startEmbeddedDynamoDB } from '../../local/dynamodb.ts';
import { parseConnector } from '../../shared/domain/connector.ts';
import { type LocalFixture, type LocalMode, prepareLocalFixture, startLocalMode } from '../support/local-mode.ts';
import { type OidcServer, startOidcServer } from '../support/oidc.ts';
import { type ScriptedServer, startScriptedServer } from '../support/scripted-server.ts';
import { type SecretsManagerServer, startSecretsManagerServer } from '../support/secrets-manager-server.ts';

const ROOT = resolve(import.meta.dirname, '..', '..');
const CALLER = {
  accessKeyId: 'AKIACLITEST',
  secretAccessKey: 'cli-test-signing-key',
  arn: 'arn:aws:iam::111122223333:user/operator',
};
const STRANGER = {
  accessKeyId: 'AKIACLISTRANGER',
  secretAccessKey: 'stranger-signing-key',
  arn: 'arn:aws:iam::999988887777:user/stranger',
};

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the CLI in-process with its own environment and working folder. */
async function cli(argv: string[], env: Record<string, string> = {}, cwd = ROOT): Promise<Run> {
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
  const code = await main(argv, io);
  return { code, stdout, stderr };
}

/** A loopback port nothing listens on (fetch refuses "bad ports" such as 9 before connecting). */
const freePort = () =>
  new Promise<number>((done) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => done(port));
    });
  });

const validDocument = (tokenUrl = 'https://idp.example/oauth2/token') => ({
  grantType: 'client_credentials',
  tokenUrl,
  clientId: 'crm-client',
  clientSecret: 'crm-client-secret-value',
  scope: 'read write',
  allowedPrincipals: ['111122223333'],
});

describe('CLI: token-vendor', () => {
  let work: string;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'token-vendor-cli-'));
    await writeFile(join(work, 'crm.json'), JSON.stringify(validDocument()));
    await writeFile(join(work, 'typo.json'), JSON.stringify({ ...validDocument(), clientSecrett: 'typo-value' }));
    await writeFile(join(work, 'not-json.json'), '{ "grantType": ');
    await writeFile(join(work, 'local-only.json'), JSON.stringify(validDocument('http://127.0.0.1:9000/token')));
    await writeFile(join(work, 'plain-http.json'), JSON.stringify(validDocument('http://idp.example/token')));
    await mkdir(join(work, 'password'));
    await writeFile(join(work, 'password', 'misplaced.json'), JSON.stringify(validDocument()));
  });
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  describe('Help and usage', () => {
    it('prints the commands for --help and exits 0', async () => {
      // Act
      const run = await cli(['--help']);

      // Assess
      expect(run.code).toBe(EXIT.ok);
      expect(run.stdout).toMatch(/Usage: token-vendor <command>/);
      for (const command of [
        'token get',
        'connectors validate',
        'connectors put',
        'connectors list',
        'connect',
        'status',
      ]) {
        expect(run.stdout).toContain(command);
      }
    });

    it.each([
      'token get',
      'connectors validate',
      'connectors put',
      'connectors list',
      'connect',
      'status',
      'token',
      'connectors',
    ])('has --help for "%s"', async (command) => {
      // Act
      const run = await cli([...command.split(' '), '--help']);

      // Assess
      expect(run.code).toBe(EXIT.ok);
      expect(run.stdout).toMatch(/^(Usage: token-vendor|token-vendor \w+:)/);
      expect(run.stderr).toBe('');
    });

    it('exits 2 with the help on stderr without a command, an unknown command or an unknown option', async () => {
      // Act
      const runs = await Promise.all([
        cli([]),
        cli(['tokens']),
        cli(['connectors', 'remove']),
        cli(['status', '--colour']),
      ]);

      // Assess
      expect(runs.map((run) => run.code)).toEqual([2, 2, 2, 2]);
      expect(runs[1]?.stderr).toMatch(/unknown command "tokens"/);
      expect(runs[2]?.stderr).toMatch(/unknown command "connectors remove"/);
      expect(runs[3]?.stderr).toMatch(/Unknown option '--colour'/);
      expect(runs.every((run) => run.stdout === '')).toBe(true);
    });
  });

  describe('Command: connectors validate', () => {
    it('accepts a valid document (exit 0)', async () => {
      // Act
      const run = await cli(['connectors', 'validate', 'crm.json'], {}, work);

      // Assess
      expect(run).toEqual({ code: 0, stdout: 'crm.json: valid client_credentials connector\n', stderr: '' });
    });

    it("refuses an invalid document with the service's own message, never quoting a value (exit 1)", async () => {
      // Prepare
      const text = await readFile(join(work, 'typo.json'), 'utf8');
      const serviceMessage = (() => {
        try {
          parseConnector({ family: 'client-credentials', connectorId: 'typo' }, text);
          return '';
        } catch (error) {
          return (error as Error).message;
        }
      })();

      // Act
      const run = await cli(['connectors', 'validate', 'typo.json', 'not-json.json', 'crm.json'], {}, work);

      // Assess
      expect(run.code).toBe(EXIT.failed);
      expect(serviceMessage).toBe('Connector document field "clientSecrett": is not a known field.');
      expect(run.stderr).toContain(`typo.json: invalid: ${serviceMessage}`);
      expect(run.stderr).toContain(
        'not-json.json: invalid: Connector document field "(document)": is not valid JSON at line 1, column 16.',
      );
      expect(run.stderr).toContain('2 of 3 document(s) invalid');
      expect(run.stdout).toBe('crm.json: valid client_credentials connector\n');
      expect(run.stderr).not.toContain('typo-value');
    });

    it("refuses a document whose grantType is not its folder's family, or --family's", async () => {
      // Act
      const run = await cli(['connectors', 'validate', join('password', 'misplaced.json')], {}, work);
      const named = await cli(['connectors', 'validate', 'crm.json', '--family', 'password'], {}, work);
      const unknown = await cli(['connectors', 'validate', 'crm.json', '--family', 'implicit'], {}, work);

      // Assess
      expect(run.code).toBe(EXIT.failed);
      expect(run.stderr).toMatch(/grantType "client_credentials" belongs under client-credentials\/, not password\//);
      expect(named.code).toBe(EXIT.failed);
      expect(named.stderr).toMatch(/belongs under client-credentials\/, not password\//);
      expect(unknown.code).toBe(EXIT.usage);
    });

    it('warns about a loopback http token URL (local mode only) and refuses plain http elsewhere', async () => {
      // Act
      const localOnly = await cli(['connectors', 'validate', 'local-only.json'], {}, work);
      const plainHttp = await cli(['connectors', 'validate', 'plain-http.json'], {}, work);

      // Assess
      expect(localOnly.code).toBe(EXIT.ok);
      expect(localOnly.stderr).toMatch(/warning: tokenUrl must use https: accepted in local mode only/);
      expect(plainHttp.code).toBe(EXIT.failed);
      expect(plainHttp.stderr).toMatch(/field "tokenUrl": must use https \(http only for loopback hosts\)/);
    });

    it('exits 1 for a file it cannot read and 2 without a file', async () => {
      // Act
      const missing = await cli(['connectors', 'validate', 'nothing.json'], {}, work);
      const none = await cli(['connectors', 'validate'], {}, work);

      // Assess
      expect(missing.code).toBe(EXIT.failed);
      expect(missing.stderr).toMatch(/cannot read nothing\.json \(ENOENT\)/);
      expect(none.code).toBe(EXIT.usage);
      expect(none.stderr).toMatch(/missing <file>/);
    });
  });

  describe('Command: connectors put / list (local folder)', () => {
    let dir: string;

    beforeAll(async () => {
      dir = join(work, 'connectors');
    });

    it('writes the validated document atomically, then lists it', async () => {
      // Act
      const created = await cli(
        ['connectors', 'put', 'client-credentials/crm', '--file', 'crm.json', '--dir', dir],
        {},
        work,
      );
      const updated = await cli(['connectors', 'put', 'client-credentials/crm', '-f', 'crm.json'], {}, work);
      await cli(['connectors', 'put', 'client-credentials/billing', '--file', 'crm.json', '--dir', dir], {}, work);
      const listed = await cli(['connectors', 'list', '--dir', dir], {}, work);
      const listedJson = await cli(['connectors', 'list', '--json'], { TOKEN_VENDOR_CONNECTORS_DIR: dir }, work);

      // Assess
      expect(created.code).toBe(EXIT.ok);
      expect(created.stdout).toBe(
        `created client-credentials/crm (client_credentials) in ${join(dir, 'client-credentials', 'crm.json')}\n`,
      );
      // Without --dir, ./connectors is where it goes.
      expect(updated.stdout).toMatch(/^updated client-credentials\/crm/);
      const path = join(dir, 'client-credentials', 'crm.json');
      expect(await readFile(path, 'utf8')).toBe(await readFile(join(work, 'crm.json'), 'utf8'));
      expect((await stat(path)).mode & 0o777).toBe(0o600);
      expect(await readdir(join(dir, 'client-credentials'))).toEqual(['billing.json', 'crm.json']);
      expect(listed.stdout).toBe('client-credentials/billing\nclient-credentials/crm\n');
      expect(JSON.parse(listedJson.stdout)).toEqual(['client-credentials/billing', 'client-credentials/crm']);
    });

    it('writes nothing for an invalid document or one of another family (exit 1)', async () => {
      // Act
      const invalid = await cli(['connectors', 'put', 'client-credentials/typo', '--file', 'typo.json'], {}, work);
      const otherFamily = await cli(['connectors', 'put', 'password/crm', '--file', 'crm.json'], {}, work);

      // Assess
      expect(invalid.code).toBe(EXIT.failed);
      expect(invalid.stderr).toMatch(/invalid, nothing written: Connector document field "clientSecrett"/);
      expect(otherFamily.code).toBe(EXIT.failed);
      expect(otherFamily.stderr).toMatch(/belongs under client-credentials\//);
      expect(await readdir(join(work, 'connectors'))).toEqual(['client-credentials']);
    });

    it('refuses wrong usage with exit 2', async () => {
      // Act
      const runs = await Promise.all([
        cli(['connectors', 'put', 'client-credentials/crm'], {}, work),
        cli(['connectors', 'put', 'implicit/crm', '--file', 'crm.json'], {}, work),
        cli(['connectors', 'put', 'client-credentials/../x', '--file', 'crm.json'], {}, work),
        cli(
          ['connectors', 'put', 'client-credentials/crm', '--file', 'crm.json', '--dir', 'a', '--prefix', 'b'],
          {},
          work,
        ),
        // No --dir, no --prefix, no settings and no ./connectors: never AWS by accident.
        cli(['connectors', 'list'], {}, join(work, 'password')),
      ]);

      // Assess
      expect(runs.map((run) => run.code)).toEqual([2, 2, 2, 2, 2]);
      expect(runs.map((run) => run.stderr.split('\n')[0])).toEqual([
        'token-vendor connectors put: missing --file <document.json>',
        'token-vendor connectors put: unknown family "implicit": one of client-credentials, password, refresh-token, jwt-bearer',
        'token-vendor connectors put: expected <family>/<connectorId> (e.g. client-credentials/crm), got "client-credentials/../x"',
        'token-vendor connectors put: --dir and --prefix exclude each other',
        'token-vendor connectors list: say where the connectors are: --dir <folder> (local mode) or --prefix <secret prefix> (AWS, e.g. token-vendor)',
      ]);
    });

    it('exits 1 listing a folder that does not exist', async () => {
      // Act
      const run = await cli(['connectors', 'list', '--dir', join(work, 'nowhere')], {}, work);

      // Assess
      expect(run.code).toBe(EXIT.failed);
      expect(run.stderr).toMatch(/no such folder/);
    });
  });

  describe('Command: connectors put / list (Secrets Manager)', () => {
    let secrets: SecretsManagerServer;
    let env: Record<string, string>;

    beforeAll(async () => {
      secrets = await startSecretsManagerServer(2);
      secrets.put('other-app/client-credentials/x', '{}');
      env = {
        AWS_ENDPOINT_URL_SECRETS_MANAGER: secrets.endpoint,
        AWS_ACCESS_KEY_ID: 'local',
        AWS_SECRET_ACCESS_KEY: 'local',
        AWS_REGION: 'us-east-1',
      };
    });
    afterAll(async () => {
      await secrets?.close();
    });

    it('creates the secret, then puts a new version of it, and lists connectors across pages', async () => {
      // Prepare
      const changed = join(work, 'crm-changed.json');
      await writeFile(changed, JSON.stringify({ ...validDocument(), scope: 'read' }));

      // Act
      const created = await cli(
        ['connectors', 'put', 'client-credentials/crm', '-f', 'crm.json', '--prefix', 'token-vendor'],
        env,
        work,
      );
      const updated = await cli(
        ['connectors', 'put', 'client-credentials/crm', '-f', changed, '--prefix', 'token-vendor'],
        env,
        work,
      );
      for (const id of ['a', 'b', 'c']) {
        await cli(
          ['connectors', 'put', `client-credentials/${id}`, '-f', 'crm.json'],
          { ...env, TOKEN_VENDOR_SECRET_PREFIX: 'token-vendor' },
          work,
        );
      }
      const listed = await cli(['connectors', 'list', '--prefix', 'token-vendor/'], env, work);

      // Assess
      expect(created.stdout).toBe(
        'created client-credentials/crm (client_credentials) in token-vendor/client-credentials/crm\n',
      );
      expect(updated.stdout).toBe(
        'updated client-credentials/crm (client_credentials) in token-vendor/client-credentials/crm\n',
      );
      expect(secrets.secrets.get('token-vendor/client-credentials/crm')?.value).toBe(await readFile(changed, 'utf8'));
      expect(secrets.calls.get('CreateSecret')).toBe(4);
      expect(listed.stdout).toBe(
        'client-credentials/a\nclient-credentials/b\nclient-credentials/c\nclient-credentials/crm\n',
      );
    });

    it('refuses a token URL AWS would refuse before writing anything', async () => {
      // Prepare
      const writesBefore = (secrets.calls.get('PutSecretValue') ?? 0) + (secrets.calls.get('CreateSecret') ?? 0);

      // Act
      const run = await cli(
        ['connectors', 'put', 'client-credentials/dev', '-f', 'local-only.json', '--prefix', 'token-vendor'],
        env,
        work,
      );

      // Assess
      expect(run.code).toBe(EXIT.failed);
      expect(run.stderr).toMatch(/field "tokenUrl": must use https/);
      expect((secrets.calls.get('PutSecretValue') ?? 0) + (secrets.calls.get('CreateSecret') ?? 0)).toBe(writesBefore);
    });
  });

  describe('Command: token get, and status (against local mode on a shared DynamoDB)', () => {
    let dynamo: EmbeddedDynamoDB;
    let oidc: OidcServer;
    let scripted: ScriptedServer;
    let fixture: LocalFixture;
    let local: LocalMode;
    let callerEnv: Record<string, string>;
    let operatorEnv: Record<string, string>;
    let closedPort: number;

    beforeAll(async () => {
      dynamo = await startEmbeddedDynamoDB();
      oidc = await startOidcServer({
        clients: [
          {
            client_id: 'cli-cc',
            client_secret: 'cli-cc-secret',
            token_endpoint_auth_method: 'client_secret_basic',
            grant_types: ['client_credentials'],
            scope: 'read write',
          },
        ],
      });
      scripted = await startScriptedServer(() => ({ status: 401, body: { error: 'invalid_client' } }));
      closedPort = await freePort();
      const cc = { grantType: 'client_credentials', clientId: 'cli-cc', clientSecret: 'cli-cc-secret' };
      const allowed = { allowedPrincipals: [CALLER.arn] };
      fixture = await prepareLocalFixture(
        {
          'client-credentials/crm': { ...cc, tokenUrl: oidc.tokenUrl, scope: 'read write', ...allowed },
          'client-credentials/revoked': { ...cc, tokenUrl: scripted.url, clientAuthentication: 'basic', ...allowed },
          'client-credentials/down': { ...cc, tokenUrl: `http://127.0.0.1:${closedPort}/token`, ...allowed },
          'client-credentials/idle': { ...cc, tokenUrl: oidc.tokenUrl, ...allowed },
          'password/broken': { ...cc, grantType: 'password', tokenUrl: oidc.tokenUrl, ...allowed },
        },
        { CALLER, STRANGER },
        dynamo.endpoint,
      );
      local = await startLocalMode({ ...fixture.env, TOKEN_VENDOR_MAX_ATTEMPTS: '1' });
      callerEnv = {
        AWS_ACCESS_KEY_ID: CALLER.accessKeyId,
        AWS_SECRET_ACCESS_KEY: CALLER.secretAccessKey,
        TOKEN_VENDOR_ENDPOINT: local.url,
      };
      operatorEnv = {
        AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint,
        AWS_ACCESS_KEY_ID: 'local',
        AWS_SECRET_ACCESS_KEY: 'local',
        TOKEN_VENDOR_CONNECTORS_DIR: fixture.connectorsDir,
      };
    });
    afterAll(async () => {
      await local?.stop();
      await oidc?.close();
      await scripted?.close();
      await dynamo?.close();
      await fixture?.cleanup();
    });

    it('prints the access token alone, the header, or the whole answer', async () => {
      // Act
      const plain = await cli(['token', 'get', 'client-credentials/crm'], callerEnv);
      const header = await cli(['token', 'get', 'client-credentials/crm', '--header'], callerEnv);
      const json = await cli(
        [
          'token',
          'get',
          'client-credentials/crm',
          '--json',
          '--scope',
          'read',
          '--min-ttl',
          '30',
          '--endpoint',
          local.url,
        ],
        { ...callerEnv, TOKEN_VENDOR_ENDPOINT: `http://127.0.0.1:${closedPort}` },
      );

      // Assess
      expect(plain.code).toBe(EXIT.ok);
      expect(plain.stdout).toMatch(/^\S+\n$/);
      expect(header.stdout).toBe(`Authorization: Bearer ${plain.stdout}`);
      expect(JSON.parse(json.stdout)).toMatchObject({ token_type: 'Bearer', scope: 'read' });
    });

    it('exits 1 with the error code, status and upstream error when the vendor refuses', async () => {
      // Act
      const denied = await cli(['token', 'get', 'client-credentials/crm'], {
        ...callerEnv,
        AWS_ACCESS_KEY_ID: STRANGER.accessKeyId,
        AWS_SECRET_ACCESS_KEY: STRANGER.secretAccessKey,
      });
      const revoked = await cli(['token', 'get', 'client-credentials/revoked'], callerEnv);
      const down = await cli(['token', 'get', 'client-credentials/down'], callerEnv);
      const unreachable = await cli(
        ['token', 'get', 'client-credentials/crm', '--endpoint', `http://127.0.0.1:${closedPort}`],
        callerEnv,
      );

      // Assess
      expect([denied.code, revoked.code, down.code, unreachable.code]).toEqual([1, 1, 1, 1]);
      expect(denied.stderr).toMatch(/^token-vendor token get: access_denied \(HTTP 403\): The caller may not vend/);
      expect(revoked.stderr).toMatch(/upstream_rejected \(HTTP 502\): .* \(upstream error: invalid_client\)\n$/);
      expect(down.stderr).toMatch(/upstream_unavailable \(HTTP 503\)/);
      expect(unreachable.stderr).toBe(
        'token-vendor token get: vendor_unreachable: The token vendor could not be reached. (ECONNREFUSED)\n',
      );
      expect([denied, revoked, down, unreachable].every((run) => run.stdout === '')).toBe(true);
    });

    it('refuses wrong usage with exit 2 before calling anything', async () => {
      // Act
      const runs = await Promise.all([
        cli(['token', 'get'], callerEnv),
        cli(['token', 'get', 'client-credentials/crm', '--header', '--json'], callerEnv),
        cli(['token', 'get', 'client-credentials/crm', '--min-ttl', 'soon'], callerEnv),
        cli(['token', 'get', 'client-credentials/crm', '--scope', 'a"b'], callerEnv),
        cli(['token', 'get', 'client-credentials/crm', '--endpoint', 'ftp://vendor'], callerEnv),
      ]);

      // Assess
      expect(runs.map((run) => run.code)).toEqual([2, 2, 2, 2, 2]);
    });

    it("shows each connector's health from the token table", async () => {
      // Act
      const run = await cli(['status'], operatorEnv);
      const json = await cli(['status', '--json', '--dir', fixture.connectorsDir, '--table', 'token-vendor-tokens'], {
        ...operatorEnv,
        TOKEN_VENDOR_CONNECTORS_DIR: '/nowhere',
      });

      // Assess
      expect(run.code).toBe(EXIT.ok);
      const lines = run.stdout.trimEnd().split('\n');
      expect(lines[0]).toMatch(/^CONNECTOR\s+STATE\s+DETAIL$/);
      expect(lines.slice(1).map((line) => line.split(/\s{2,}/).slice(0, 2))).toEqual([
        ['client-credentials/crm', 'ok'],
        ['client-credentials/down', 'failing'],
        ['client-credentials/idle', 'ok'],
        ['client-credentials/revoked', 'needs_reauthorization'],
        ['password/broken', 'invalid'],
      ]);
      expect(run.stdout).toMatch(
        /client-credentials\/down\s+failing\s+1 failure\(s\) in a row, last upstream_unavailable/,
      );
      expect(run.stdout).toMatch(/revoked\s+needs_reauthorization\s+invalid_client: put a new document/);
      expect(run.stdout).toMatch(
        /password\/broken\s+invalid\s+Connector document field "username": is required; field "password": is required\./,
      );
      expect(JSON.parse(json.stdout)).toContainEqual({
        connector: 'client-credentials/revoked',
        state: 'needs_reauthorization',
        upstreamError: 'invalid_client',
      });
    });

    it('exits 1 when the token table cannot be read', async () => {
      // Act
      const run = await cli(['status', '--table', 'no-such-table'], operatorEnv);

      // Assess
      expect(run.code).toBe(EXIT.failed);
      expect(run.stderr).toMatch(/reading the token table no-such-table failed \(ResourceNotFoundException/);
    });
  });

  describe('Process: the token-vendor command (package.json bin)', () => {
    const npx = (args: string[]) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((done) => {
        execFile('npx', ['--no', '--', 'token-vendor', ...args], { cwd: ROOT }, (error, stdout, stderr) => {
          done({ code: error === null ? 0 : Number(error.code), stdout, stderr });
        });
      });

    it('runs through npx with the exit codes of main()', async () => {
      // Act
      const [help, invalid, usage] = await Promise.all([
        npx(['--help']),
        npx(['connectors', 'validate', join(work, 'typo.json')]),
        npx(['token', 'get']),
      ]);

      // Assess
      expect(help.code).toBe(EXIT.ok);
      expect(help.stdout).toMatch(/^token-vendor: the token vendor from the command line/);
      expect(invalid.code).toBe(EXIT.failed);
      expect(invalid.stderr).toMatch(/is not a known field/);
      expect(usage.code).toBe(EXIT.usage);
    });
  });
});
