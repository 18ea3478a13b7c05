import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DescribeSecretCommand,
  GetSecretValueCommand,
  PutSecretValueCommand,
  ResourceExistsException,
  ResourceNotFoundException,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EmbeddedDynamoDB, startEmbeddedDynamoDB } from '../../local/dynamodb.ts';
import { localCredentials } from '../support/harness.ts';
import {
  type LocalFixture,
  type LocalMode,
  prepareLocalFixture,
  signedFetch,
  startEach,
  startLocalMode,
} from '../support/local-mode.ts';
import { type OidcServer, startOidcServer } from '../support/oidc.ts';
import { type SecretsManagerServer, startSecretsManagerServer } from '../support/secrets-manager-server.ts';

const CALLER = {
  accessKeyId: 'AKIASECRETSLOCAL',
  secretAccessKey: 'secrets-local-secret',
  arn: 'arn:aws:iam::111122223333:user/secrets-local',
};
const CC_SECRET = 'tv/client-credentials/crm';
const RT_SECRET = 'tv/refresh-token/mail';

/** Settles with the first line the process prints from now on that `accept` takes (stdout or stderr). */
function nextLine(local: LocalMode, accept: (line: string) => boolean): Promise<string> {
  return new Promise((resolve) => {
    let pending = '';
    const onData = (chunk: Buffer) => {
      pending += chunk.toString('utf8');
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      const found = lines.find(accept);
      if (found === undefined) return;
      local.child.stdout?.off('data', onData);
      local.child.stderr?.off('data', onData);
      resolve(found);
    };
    local.child.stdout?.on('data', onData);
    local.child.stderr?.on('data', onData);
  });
}

/** A scheduled run's summary line that reports at least one refreshed token. */
const refreshingRun = (line: string) => {
  if (!line.includes('scheduled rotation finished')) return false;
  try {
    return ((JSON.parse(line) as { refreshed?: number }).refreshed ?? 0) > 0;
  } catch {
    return false;
  }
};

/** A reconciliation's summary line that found no connector changed in its window. */
const reconciledNothing = (line: string) => {
  if (!line.includes('connectors reconciled')) return false;
  try {
    return (JSON.parse(line) as { changed?: number }).changed === 0;
  } catch {
    return false;
  }
};

/** Fails with `what` if `promise` has not settled within `ms` (a guard, not a wait: the promise is an event). */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

describe('Loopback Secrets Manager: versions and staging labels as the service keeps them', () => {
  let server: SecretsManagerServer;
  let client: SecretsManagerClient;

  beforeAll(async () => {
    server = await startSecretsManagerServer();
    client = new SecretsManagerClient({
      endpoint: server.endpoint,
      region: 'us-east-1',
      credentials: localCredentials,
      maxAttempts: 1,
    });
  });
  afterAll(async () => {
    client?.destroy();
    await server?.close();
  });

  it('gives each PutSecretValue a new AWSCURRENT version and moves AWSPREVIOUS to the one it replaced', async () => {
    // Prepare
    const first = server.put('tv/versions', 'v0');
    const second = 'a'.repeat(32);
    const third = 'b'.repeat(32);

    // Act
    await client.send(
      new PutSecretValueCommand({ SecretId: 'tv/versions', SecretString: 'v1', ClientRequestToken: second }),
    );
    const put = await client.send(
      new PutSecretValueCommand({ SecretId: 'tv/versions', SecretString: 'v2', ClientRequestToken: third }),
    );
    const current = await client.send(new GetSecretValueCommand({ SecretId: 'tv/versions' }));
    const previous = await client.send(
      new GetSecretValueCommand({ SecretId: 'tv/versions', VersionStage: 'AWSPREVIOUS' }),
    );
    const oldest = await client.send(new GetSecretValueCommand({ SecretId: 'tv/versions', VersionId: first }));
    const byArn = await client.send(new GetSecretValueCommand({ SecretId: put.ARN }));
    const described = await client.send(new DescribeSecretCommand({ SecretId: 'tv/versions' }));
    const mismatched = await client
      .send(new GetSecretValueCommand({ SecretId: 'tv/versions', VersionId: first, VersionStage: 'AWSCURRENT' }))
      .catch((error: unknown) => error);

    // Assess
    expect(put).toMatchObject({ Name: 'tv/versions', VersionId: third, VersionStages: ['AWSCURRENT'] });
    expect(put.ARN).toMatch(/^arn:aws:secretsmanager:us-east-1:\d{12}:secret:tv\/versions-[0-9a-f]{6}$/);
    expect(current).toMatchObject({ SecretString: 'v2', VersionId: third, VersionStages: ['AWSCURRENT'] });
    expect(current.CreatedDate).toBeInstanceOf(Date);
    expect(previous).toMatchObject({ SecretString: 'v1', VersionId: second, VersionStages: ['AWSPREVIOUS'] });
    expect(oldest).toMatchObject({ SecretString: 'v0', VersionId: first, VersionStages: [] });
    expect(byArn.SecretString).toBe('v2');
    expect(described.VersionIdsToStages).toEqual({ [second]: ['AWSPREVIOUS'], [third]: ['AWSCURRENT'] });
    expect(mismatched).toBeInstanceOf(ResourceNotFoundException);
    expect(server.versions('tv/versions')).toEqual([
      { versionId: first, stages: [], value: 'v0' },
      { versionId: second, stages: ['AWSPREVIOUS'], value: 'v1' },
      { versionId: third, stages: ['AWSCURRENT'], value: 'v2' },
    ]);
    expect(server.secrets.get('tv/versions')).toMatchObject({ value: 'v2', versionId: third });
  });

  it('ignores a repeated ClientRequestToken with the same value and refuses it with another value', async () => {
    // Prepare
    const seed = server.put('tv/idempotent', 'v0');
    const token = 'c'.repeat(64);
    const send = (value: string) =>
      client.send(
        new PutSecretValueCommand({ SecretId: 'tv/idempotent', SecretString: value, ClientRequestToken: token }),
      );

    // Act
    const first = await send('v1');
    const repeat = await send('v1');
    const conflicting = await send('other').catch((error: unknown) => error);

    // Assess
    expect(repeat).toMatchObject({ VersionId: first.VersionId, VersionStages: ['AWSCURRENT'] });
    expect(conflicting).toBeInstanceOf(ResourceExistsException);
    expect(server.versions('tv/idempotent')).toEqual([
      { versionId: seed, stages: ['AWSPREVIOUS'], value: 'v0' },
      { versionId: token, stages: ['AWSCURRENT'], value: 'v1' },
    ]);
  });

  it('answers ResourceNotFoundException for a missing secret, version or staging label', async () => {
    // Prepare
    server.put('tv/lonely', 'only');

    // Act
    const results = await Promise.all(
      [
        client.send(new GetSecretValueCommand({ SecretId: 'tv/missing' })),
        client.send(new GetSecretValueCommand({ SecretId: 'tv/lonely', VersionStage: 'AWSPREVIOUS' })),
        client.send(new GetSecretValueCommand({ SecretId: 'tv/lonely', VersionId: 'd'.repeat(32) })),
        client.send(new DescribeSecretCommand({ SecretId: 'tv/missing' })),
      ].map((call: Promise<unknown>) => call.catch((error: unknown) => error)),
    );

    // Assess
    for (const result of results) expect(result).toBeInstanceOf(ResourceNotFoundException);
  });
});

describe('Local mode with connectors in Secrets Manager (TOKEN_VENDOR_SECRET_PREFIX, no connectors folder)', () => {
  let oidc: OidcServer;
  let secretsManager: SecretsManagerServer;
  let fixture: LocalFixture;
  /** An empty working directory: no ./connectors, and nothing may be written into it. */
  let cwd: string;
  let local: LocalMode;
  let lambda: LocalMode;
  let seedDocument: Record<string, unknown>;
  let seedRefreshToken: string;
  let env: Record<string, string>;
  /** Settles on the first PutSecretValue: the schedule may rotate the chain before any test runs. */
  let checkpointed: Promise<void>;
  const started: LocalMode[] = [];

  beforeAll(async () => {
    // The child inherits this environment: it must not name a connectors folder or force the demo.
    expect(process.env.TOKEN_VENDOR_CONNECTORS_DIR).toBeUndefined();
    expect(process.env.TOKEN_VENDOR_DEMO).toBeUndefined();
    oidc = await startOidcServer({
      clients: [
        {
          client_id: 'sm-cc',
          client_secret: 'sm-cc-secret',
          token_endpoint_auth_method: 'client_secret_basic',
          grant_types: ['client_credentials'],
          scope: 'read write',
        },
        {
          client_id: 'sm-rt',
          client_secret: 'sm-rt-secret',
          token_endpoint_auth_method: 'client_secret_basic',
          grant_types: ['refresh_token'],
        },
      ],
    });
    secretsManager = await startSecretsManagerServer();
    const clientCredentials = {
      grantType: 'client_credentials',
      tokenUrl: oidc.tokenUrl,
      clientId: 'sm-cc',
      clientSecret: 'sm-cc-secret',
      scope: 'read write',
      allowedPrincipals: ['111122223333'],
    };
    secretsManager.put(CC_SECRET, JSON.stringify(clientCredentials));
    // Under the default prefix, not ours: local mode must not find it.
    secretsManager.put('token-vendor/client-credentials/decoy', JSON.stringify(clientCredentials));
    seedRefreshToken = await oidc.issueRefreshToken('sm-rt');
    seedDocument = {
      grantType: 'refresh_token',
      tokenUrl: oidc.tokenUrl,
      clientId: 'sm-rt',
      clientSecret: 'sm-rt-secret',
      refreshToken: seedRefreshToken,
      allowedPrincipals: ['111122223333'],
      defaultExpiresIn: 3600,
    };
    secretsManager.put(RT_SECRET, JSON.stringify(seedDocument, null, 2));

    // No connector files: only the principals file, and TOKEN_VENDOR_CONNECTORS_DIR left out.
    fixture = await prepareLocalFixture({}, { CALLER });
    const { TOKEN_VENDOR_CONNECTORS_DIR: _folder, ...fixtureEnv } = fixture.env;
    env = {
      ...fixtureEnv,
      TOKEN_VENDOR_SECRET_PREFIX: 'tv',
      AWS_ENDPOINT_URL_SECRETS_MANAGER: secretsManager.endpoint,
      TOKEN_VENDOR_FORCED_REFRESH_SECONDS: '0',
    };
    cwd = await mkdtemp(join(tmpdir(), 'token-vendor-sm-cwd-'));
    checkpointed = secretsManager.nextCalls('PutSecretValue');
    // One process also runs the scheduled function every second, and (idle interval 0) it exercises the chain each time.
    const starting = [
      startLocalMode(
        { ...env, TOKEN_VENDOR_ROTATE_INTERVAL_SECONDS: '1', TOKEN_VENDOR_IDLE_REFRESH_SECONDS: '0' },
        cwd,
      ),
      startLocalMode({ ...env, TOKEN_VENDOR_LAMBDA: '1' }, cwd),
    ];
    [local, lambda] = (await startEach(starting, started)) as [LocalMode, LocalMode];
  }, 30_000);
  afterAll(async () => {
    await Promise.all(started.map((process) => process.stop()));
    await oidc?.close();
    await secretsManager?.close();
    await fixture?.cleanup();
    if (cwd !== undefined) await rm(cwd, { recursive: true, force: true });
  });

  it('vends a client-credentials token read from the secret tv/client-credentials/crm, with no demo', async () => {
    // Act
    const vended = await signedFetch(`${local.url}/tokens/client-credentials/crm?scope=read`, CALLER);
    const body = (await vended.json()) as Record<string, unknown>;
    const unknown = await signedFetch(`${local.url}/tokens/client-credentials/nope`, CALLER);
    const otherPrefix = await signedFetch(`${local.url}/tokens/client-credentials/decoy`, CALLER);

    // Assess
    expect(vended.status).toBe(200);
    expect(body).toMatchObject({ token_type: 'Bearer', scope: 'read' });
    expect([unknown.status, otherPrefix.status]).toEqual([403, 403]);
    expect((secretsManager.calls.get('GetSecretValue') ?? 0) > 0).toBe(true);
    expect(local.output()).toContain('connectors from Secrets Manager under tv/');
    expect(local.output()).not.toMatch(/DEMO MODE|demo-connectors/);
    // Nothing was written where it runs (the demo would write .token-vendor/demo-connectors there).
    expect(await readdir(cwd)).toEqual([]);
  });

  it('rotates a refresh-token chain through forced refreshes and the schedule, checkpointing the secret once', async () => {
    // Prepare
    const url = `${local.url}/tokens/refresh-token/mail`;
    const statuses: number[] = [];
    const vend = async (method: 'GET' | 'POST' = 'GET') => {
      const response = await signedFetch(method === 'POST' ? `${url}/refresh` : url, CALLER, { method });
      await response.arrayBuffer();
      statuses.push(response.status);
    };

    // Act: vends and forced refreshes, then one scheduled run that refreshes the chain, then a last vend.
    await vend();
    for (let round = 0; round < 4; round += 1) {
      await vend('POST');
      await vend();
    }
    await within(nextLine(local, refreshingRun), 10_000, 'a scheduled run that refreshed a token');
    await vend();
    await within(checkpointed, 5_000, 'the checkpoint PutSecretValue');

    // Assess
    expect(statuses).toEqual(Array.from({ length: 10 }, () => 200));
    expect(oidc.reuses()).toBe(0);
    expect(oidc.errors()).toEqual([]);
    expect(oidc.issuedRefreshTokens().length).toBeGreaterThanOrEqual(5);
    expect(secretsManager.putsBySecret.get(RT_SECRET)).toBe(1);
    const versions = secretsManager.versions(RT_SECRET);
    expect(versions.map((version) => version.stages)).toEqual([['AWSPREVIOUS'], ['AWSCURRENT']]);
    expect(JSON.parse(versions[0]?.value ?? '{}')).toEqual(seedDocument);
    const written = JSON.parse(versions[1]?.value ?? '{}') as { refreshToken: string };
    expect({ ...written, refreshToken: seedRefreshToken }).toEqual(seedDocument);
    expect(written.refreshToken).not.toBe(seedRefreshToken);
    expect(oidc.issuedRefreshTokens()).toContain(written.refreshToken);
    expect(local.output()).not.toContain(written.refreshToken);
  });

  it('vends through Lambda-like containers, which get the Secrets Manager endpoint too (TOKEN_VENDOR_LAMBDA=1)', async () => {
    // Act
    const vended = await signedFetch(`${lambda.url}/tokens/client-credentials/crm`, CALLER);
    const body = (await vended.json()) as Record<string, unknown>;
    const unknown = await signedFetch(`${lambda.url}/tokens/client-credentials/nope`, CALLER);

    // Assess
    expect(vended.status).toBe(200);
    expect(body).toMatchObject({ token_type: 'Bearer' });
    expect(unknown.status).toBe(403);
    expect(lambda.output()).toContain('with Lambda semantics; connectors from Secrets Manager under tv/');
    expect(lambda.output()).not.toMatch(/DEMO MODE|demo-connectors/);
    expect(await readdir(cwd)).toEqual([]);
  });
});

describe('Connector changes reach cached tokens (Secrets Manager, two processes on one table)', () => {
  let oidc: OidcServer;
  let sm: SecretsManagerServer;
  let dynamo: EmbeddedDynamoDB;
  let fixture: LocalFixture;
  let scheduler: LocalMode;
  let lambda: LocalMode;
  const started: LocalMode[] = [];

  beforeAll(async () => {
    oidc = await startOidcServer({
      clients: [
        {
          client_id: 'sm-cc',
          client_secret: 'sm-cc-secret',
          token_endpoint_auth_method: 'client_secret_basic',
          grant_types: ['client_credentials'],
        },
      ],
    });
    sm = await startSecretsManagerServer();
    dynamo = await startEmbeddedDynamoDB();
    fixture = await prepareLocalFixture({}, { CALLER }, dynamo.endpoint);
    const { TOKEN_VENDOR_CONNECTORS_DIR: _folder, ...fixtureEnv } = fixture.env;
    const env = { ...fixtureEnv, TOKEN_VENDOR_SECRET_PREFIX: 'tv', AWS_ENDPOINT_URL_SECRETS_MANAGER: sm.endpoint };
    const running = await startEach(
      [
        // The schedule, every second; it syncs connectors whose secrets changed in the last 3 s.
        startLocalMode({
          ...env,
          TOKEN_VENDOR_ROTATE_INTERVAL_SECONDS: '1',
          TOKEN_VENDOR_RECONCILE_WINDOW_SECONDS: '3',
        }),
        // The vends, as in AWS: no schedule of their own, and a secret cache that never holds, so that any secret
        // read on the hit path would show.
        startLocalMode({
          ...env,
          TOKEN_VENDOR_LAMBDA: '1',
          TOKEN_VENDOR_SECRET_MAX_AGE_SECONDS: '0',
          TOKEN_VENDOR_MEMORY_STALENESS_SECONDS: '1',
        }),
      ],
      started,
    );
    [scheduler, lambda] = running as [LocalMode, LocalMode];
  }, 30_000);
  afterAll(async () => {
    await Promise.all(started.map((process) => process.stop()));
    await dynamo?.close();
    await oidc?.close();
    await sm?.close();
    await fixture?.cleanup();
  });

  it('refuses a principal removed from a secret within the schedule interval, reading no secret on the hit path', async () => {
    // Prepare: a connector, vended once (the fetch reads its secret).
    const secret = 'tv/client-credentials/revoked';
    const document = (allowedPrincipals: string[]) =>
      JSON.stringify({
        grantType: 'client_credentials',
        tokenUrl: oidc.tokenUrl,
        clientId: 'sm-cc',
        clientSecret: 'sm-cc-secret',
        allowedPrincipals,
      });
    sm.put(secret, document(['111122223333']));
    const url = `${lambda.url}/tokens/client-credentials/revoked`;
    const first = await signedFetch(url, CALLER);
    await first.arrayBuffer();
    // Past the reconciliation window, the schedule no longer reads this secret either.
    await within(nextLine(scheduler, reconciledNothing), 15_000, 'a reconciliation with nothing changed');
    const readsBefore = sm.readsBySecret.get(secret) ?? 0;

    // Act: vends served from the cache, then the principal removed.
    const statuses: number[] = [];
    for (let index = 0; index < 20; index += 1) {
      const response = await signedFetch(url, CALLER);
      await response.arrayBuffer();
      statuses.push(response.status);
    }
    const hitPathReads = (sm.readsBySecret.get(secret) ?? 0) - readsBefore;
    const revokedAt = Date.now();
    sm.put(secret, document(['arn:aws:iam::444455556666:role/someone-else']));
    // Asked until refused, for at most 10 s: a vend is the only way to observe it.
    let refused: number | undefined;
    while (refused === undefined && Date.now() - revokedAt < 10_000) {
      const response = await signedFetch(url, CALLER);
      await response.arrayBuffer();
      if (response.status === 403) refused = Date.now() - revokedAt;
    }

    // Assess: the documented bound in local mode is the schedule's interval (1 s) plus the memory's staleness (1 s).
    expect(first.status).toBe(200);
    expect(statuses).toEqual(Array.from({ length: 20 }, () => 200));
    expect(hitPathReads).toBe(0);
    expect(refused).toBeDefined();
  });
});
