import { generateKeyPairSync } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { createServer, type Server, type Socket } from 'node:net';
import { KmsKeyringNode } from '@aws-crypto/client-node';
import { DynamoDBClient, GetItemCommand, PutItemCommand } from '@aws-sdk/client-dynamodb';
import { KMS } from '@aws-sdk/client-kms';
import type { APIGatewayProxyResult } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoDBTokenStore } from '../../shared/adapters/dynamodb-token-table.ts';
import { EncryptionSdkSealer } from '../../shared/adapters/encryption-sdk-sealer.ts';
import { FAMILIES, type Family, isFamily, refKey, tokenKeyOf } from '../../shared/core/identifiers.ts';
import { TABLE_KEY, tokenItemKey } from '../../shared/core/table.ts';
import { parseConnector } from '../../shared/domain/connector.ts';
import { profileOf } from '../../shared/domain/vend-profile.ts';
import {
  type ApiCaller,
  type DeployedFunction,
  describeRun,
  emittedMetrics,
  FUNCTION_CREDENTIALS,
  type FunctionRun,
  handlerFile,
  LambdaRunner,
  type LocalCloud,
  logRecords,
  metricBlobs,
  RESERVED_VARIABLES,
  resolveVariables,
  restApiEvent,
  type SynthesizedStack,
  scanTables,
  schedulerEvent,
  startLocalCloud,
  synthesizeStack,
  UnresolvedReferenceError,
} from '../support/artifacts.ts';

/** Synthesis bundles every function with esbuild; on two cores that takes a while. */
const SYNTH_TIMEOUT_MS = 120_000;
/** Several cold starts of 1.4 MB bundles at once. */
const RUN_TIMEOUT_MS = 60_000;

const CALLER_ROLE = 'arn:aws:iam::111122223333:role/workload';
const CALLER: ApiCaller = {
  arn: 'arn:aws:sts::111122223333:assumed-role/workload/session-1',
  accountId: '111122223333',
  accessKeyId: 'ASIACALLERHARNESS001',
  sessionToken: 'caller-session-token-2b7f09d4c1e8a365',
};
const STRANGER: ApiCaller = {
  arn: 'arn:aws:sts::999988887777:assumed-role/other/session-2',
  accountId: '999988887777',
  accessKeyId: 'ASIASTRANGERHARNESS1',
  sessionToken: 'stranger-session-token-70c3e9a1b5d2f846',
};
// Values that must never appear in anything a function writes; long and distinctive so that a hit is no accident.
const PLANTED = {
  clientSecret: 'made-up.artifact-client-secret.6c1d8e2f4a97',
  password: 'made-up.artifact-password.93ab07e4c15d',
  refreshToken: 'made-up.artifact-refresh-token.f45c2a91e07b',
  rotatingRefreshToken: 'made-up.artifact-rotating-refresh.0d8e3b6a92c4',
};
/** Access tokens the tests seal into the table themselves: never in clear in the table, never logged. */
const SEALED_TOKENS: Readonly<Record<Family, string>> = {
  'client-credentials': 'artifact-sealed-access-cc-3e91b07d5a2f',
  password: 'made-up.artifact-sealed-access-pw.58c2e4a01f9b',
  'refresh-token': 'artifact-sealed-access-rt-a7d06f13c8e2',
  'jwt-bearer': 'artifact-sealed-access-jb-5b0e97c3d1a4',
};
/** A signing key made for this run (never in a file). */
const SIGNING_KEY_PEM = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({
  type: 'pkcs8',
  format: 'pem',
}) as string;
const NEVER_LOGGED = [
  // One line of the private key's body stands for all of it.
  SIGNING_KEY_PEM.split('\n')[1] ?? '',
  ...Object.values(PLANTED),
  ...Object.values(SEALED_TOKENS),
  FUNCTION_CREDENTIALS.secretAccessKey,
  FUNCTION_CREDENTIALS.sessionToken,
  CALLER.sessionToken,
  STRANGER.sessionToken,
];

/** A valid connector document of the family (CONTRACT §2), its secrets planted. */
function connectorDocument(family: Family, tokenUrl: string, refreshToken = PLANTED.refreshToken) {
  const base = {
    grantType: FAMILIES[family],
    tokenUrl,
    clientId: `artifact-${family}`,
    clientSecret: PLANTED.clientSecret,
    allowedPrincipals: [CALLER_ROLE],
  };
  switch (family) {
    case 'client-credentials':
      return base;
    case 'password':
      return { ...base, username: 'alice', password: PLANTED.password };
    case 'refresh-token':
      return { ...base, refreshToken };
    case 'jwt-bearer':
      return {
        ...base,
        assertionIssuer: `artifact-${family}`,
        signingKey: { privateKeyPem: SIGNING_KEY_PEM },
        signingAlgorithm: 'ES256',
      };
  }
}

/** Counts every TCP connection: a token server nothing may reach (the AWS network policy refuses loopback). */
async function startTripwire(): Promise<{ port: number; connections: () => number; close(): Promise<void> }> {
  let connections = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    connections += 1;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    connections: () => connections,
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

const header = (result: APIGatewayProxyResult, name: string) =>
  Object.entries(result.headers ?? {}).find(([key]) => key.toLowerCase() === name)?.[1];
const bodyOf = (result: APIGatewayProxyResult) => JSON.parse(result.body) as Record<string, unknown>;

/** The family an API route serves: `/tokens/<family>/{connectorId}…`. */
function familyOf(fn: DeployedFunction): Family {
  const families = new Set(fn.routes.map((route) => route.resourcePath.split('/')[2] ?? ''));
  const [family] = families;
  if (families.size !== 1 || family === undefined || !isFamily(family)) {
    throw new Error(`${fn.logicalId} serves routes of no one known family: ${[...families].join(', ')}`);
  }
  return family;
}

/** The custom metrics (namespace not `AWS/…`) the template's alarms watch, directly or in a metric math expression. */
/**
 * Metrics the vend functions publish (the fetch failure alarm's, from shared/use-cases/vend.ts); every other alarm
 * watches the scheduled run's, which the scheduled test below checks against what it publishes.
 */
const VEND_METRICS = new Set(['TokenFetches', 'TokenFetchFailures']);

function customAlarmMetrics(stack: SynthesizedStack) {
  const watched: { namespace: string; name: string; dimensions: Record<string, string> }[] = [];
  const add = (metric: Readonly<Record<string, unknown>>) => {
    const namespace = metric.Namespace;
    if (typeof namespace !== 'string' || namespace.startsWith('AWS/')) return;
    const dimensions = (metric.Dimensions ?? []) as { Name: string; Value: unknown }[];
    watched.push({
      namespace,
      name: String(metric.MetricName),
      dimensions: Object.fromEntries(
        dimensions.map(({ Name, Value }) => [Name, stack.resolver.resolve(Value, `alarm dimension ${Name}`)]),
      ),
    });
  };
  for (const resource of Object.values(stack.template.Resources)) {
    if (resource.Type !== 'AWS::CloudWatch::Alarm') continue;
    const properties = resource.Properties ?? {};
    add(properties);
    for (const query of (properties.Metrics ?? []) as { MetricStat?: { Metric?: Record<string, unknown> } }[]) {
      if (query.MetricStat?.Metric !== undefined) add(query.MetricStat.Metric);
    }
  }
  return watched;
}

/** IAM's `StringLike`: `*` any run of characters, `?` one character. */
const stringLike = (pattern: string, value: string) => {
  const escaped = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replaceAll('*', '.*')
    .replaceAll('?', '.');
  return new RegExp(`^${escaped}$`).test(value);
};
const asList = (value: unknown): unknown[] => (Array.isArray(value) ? value : [value]);

/**
 * Whether the key policy of the template's key lets the function's execution role call `action` with this encryption
 * context: some Allow statement names the role (the same `Fn::GetAtt` as the function's `Role`), the action and, for
 * every condition, a value the context matches. Only `StringLike` and `StringEquals` on `kms:EncryptionContext:<key>`
 * are understood; any other condition fails the check, so that a new one is looked at.
 */
function keyPolicyAllows(
  stack: SynthesizedStack,
  fn: DeployedFunction,
  action: string,
  context: Readonly<Record<string, string>>,
): boolean {
  const [key] = stack.keys;
  const policy = key === undefined ? undefined : stack.template.Resources[key.logicalId]?.Properties?.KeyPolicy;
  const statements = asList((policy as { Statement?: unknown } | undefined)?.Statement) as Record<string, unknown>[];
  const role = JSON.stringify(stack.template.Resources[fn.logicalId]?.Properties?.Role);
  return statements.some((statement) => {
    if (statement.Effect !== 'Allow' || statement.NotAction !== undefined || statement.NotPrincipal !== undefined) {
      return false;
    }
    const principals = asList((statement.Principal as { AWS?: unknown } | undefined)?.AWS);
    if (!principals.some((principal) => JSON.stringify(principal) === role)) return false;
    if (!asList(statement.Action).some((pattern) => stringLike(String(pattern), action))) return false;
    const conditions = Object.entries((statement.Condition ?? {}) as Record<string, Record<string, unknown>>);
    return conditions.every(([operator, tests]) =>
      Object.entries(tests).every(([conditionKey, values]) => {
        const prefix = 'kms:EncryptionContext:';
        const actual = conditionKey.startsWith(prefix) ? context[conditionKey.slice(prefix.length)] : undefined;
        if (actual === undefined || (operator !== 'StringLike' && operator !== 'StringEquals')) return false;
        return asList(values).some((value) =>
          operator === 'StringLike' ? stringLike(String(value), actual) : String(value) === actual,
        );
      }),
    );
  });
}

/** The invocation's answer, or a failed expectation that tells how the run went. */
function answers(run: FunctionRun): unknown[] {
  expect(run.init, describeRun(run)).toMatchObject({ nodeVersion: expect.any(String) });
  return run.invocations.map((invocation) => {
    expect('error' in invocation ? invocation.error : undefined, describeRun(run)).toBeUndefined();
    return 'result' in invocation ? invocation.result : undefined;
  });
}

/**
 * What every run must show: a clean end, no call to a service the harness does not serve, asynchronous invocations
 * only of functions the template defines, no secret written, no error logged.
 */
function expectCleanRun(stack: SynthesizedStack, run: FunctionRun, invocations: number) {
  expect({ exitCode: run.exitCode, timedOut: run.timedOut }, describeRun(run)).toEqual({
    exitCode: 0,
    timedOut: false,
  });
  expect(run.invocations, describeRun(run)).toHaveLength(invocations);
  expect(run.aws.unexpected, 'AWS calls outside dynalite, Secrets Manager and KMS').toEqual([]);
  const functions = new Set(stack.functions.flatMap((fn) => [fn.name, fn.arn]));
  expect(
    run.aws.invocations.map((invocation) => invocation.functionName).filter((name) => !functions.has(name)),
  ).toEqual([]);
  const written = `${run.output}\n${run.stderr}`;
  expect(NEVER_LOGGED.filter((secret) => written.includes(secret))).toEqual([]);
  expect(
    logRecords(run).filter((record) => record.level === 'ERROR'),
    'error-level log records',
  ).toEqual([]);
}

describe('Deployment artifacts: the bundles of `cdk synth`, run as Lambda runs them', () => {
  let stack: SynthesizedStack;
  let cloud: LocalCloud;
  let runner: LambdaRunner;
  let tripwire: Awaited<ReturnType<typeof startTripwire>>;
  let secretPrefix: string;

  beforeAll(async () => {
    stack = synthesizeStack();
    cloud = await startLocalCloud(stack);
    runner = new LambdaRunner(stack, cloud);
    tripwire = await startTripwire();
    // Connectors are planted where the functions look for them: under the prefix the template gives.
    const prefixes = new Set(
      stack.functions
        .filter((fn) => fn.variables.TOKEN_VENDOR_SECRET_PREFIX !== undefined)
        .map((fn) => stack.resolver.resolve(fn.variables.TOKEN_VENDOR_SECRET_PREFIX, fn.logicalId)),
    );
    expect([...prefixes], 'one TOKEN_VENDOR_SECRET_PREFIX for every function that reads connectors').toHaveLength(1);
    secretPrefix = [...prefixes][0] ?? '';
  }, SYNTH_TIMEOUT_MS);
  afterAll(async () => {
    runner?.close();
    await tripwire?.close();
    await cloud?.close();
    stack?.remove();
  });

  const apiFunctions = () => stack.functions.filter((fn) => fn.routes.length > 0);
  const scheduledFunctions = () => stack.functions.filter((fn) => fn.schedules.length > 0);
  const plant = (family: Family, connectorId: string, document: object) =>
    cloud.secretsManager.put(`${secretPrefix}/${family}/${connectorId}`, JSON.stringify(document));

  describe('Cloud assembly', () => {
    it('holds a bundle, a Node.js runtime and a resolvable environment for every function of the template', () => {
      // Act
      const found = stack.functions.map((fn) => {
        let variables: Record<string, string> = {};
        let unresolved: string | undefined;
        try {
          variables = resolveVariables(stack, fn);
        } catch (error) {
          if (!(error instanceof UnresolvedReferenceError)) throw error;
          unresolved = error.message;
        }
        return {
          fn: fn.logicalId,
          runtime: fn.runtime,
          handlerFile: handlerFile(fn) !== undefined,
          unresolved,
          reserved: Object.keys(variables).filter((name) => (RESERVED_VARIABLES as readonly string[]).includes(name)),
          // Lambda refuses more than 4 KB of variables, names and values together.
          fitsLambda:
            Object.entries(variables).reduce((total, [name, value]) => total + name.length + value.length, 0) <= 4096,
          powertools: Object.keys(variables)
            .filter((name) => name.startsWith('POWERTOOLS_'))
            .sort(),
        };
      });

      // Assess
      expect(stack.functions.length).toBeGreaterThan(0);
      expect(apiFunctions().length).toBeGreaterThan(0);
      expect(scheduledFunctions().length).toBeGreaterThan(0);
      expect(found.flatMap((entry) => entry.unresolved ?? [])).toEqual([]);
      for (const entry of found) {
        expect(entry).toMatchObject({
          runtime: expect.stringMatching(/^nodejs\d+\.x$/),
          handlerFile: true,
          reserved: [],
          fitsLambda: true,
          powertools: expect.arrayContaining(['POWERTOOLS_METRICS_NAMESPACE', 'POWERTOOLS_SERVICE_NAME']),
        });
      }
    });

    it(
      'starts every function cold with nothing but the environment the template gives it',
      async () => {
        // Act
        const runs = await Promise.all(stack.functions.map((fn) => runner.run(fn, [])));

        // Assess
        for (const run of runs) {
          expectCleanRun(stack, run, 0);
          const major = /^nodejs(\d+)\.x$/.exec(run.fn.runtime)?.[1];
          expect(run.init, describeRun(run)).toMatchObject({ nodeVersion: expect.stringMatching(`^v${major}\\.`) });
          expect(run.env).toMatchObject({
            AWS_LAMBDA_FUNCTION_NAME: run.fn.name,
            AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(run.fn.memorySize),
            LAMBDA_TASK_ROOT: run.fn.assetDir,
          });
        }
      },
      RUN_TIMEOUT_MS,
    );
  });

  describe('API Gateway proxy events', () => {
    it(
      'refuses an http loopback token URL as deployed: 500 connector_misconfigured naming tokenUrl, nothing sent',
      async () => {
        // Prepare
        const connectorId = 'artifact-loopback';
        const before = tripwire.connections();
        const cases = apiFunctions().map((fn) => {
          const family = familyOf(fn);
          plant(family, connectorId, connectorDocument(family, `http://127.0.0.1:${tripwire.port}/token`));
          const events = fn.routes.map((route) =>
            restApiEvent(stack.deployment, route, { pathParameters: { connectorId }, caller: CALLER }),
          );
          return { fn, events };
        });

        // Act
        const runs = await Promise.all(cases.map(({ fn, events }) => runner.run(fn, events)));

        // Assess
        for (const [index, run] of runs.entries()) {
          expectCleanRun(stack, run, run.fn.routes.length);
          // Every line of an invocation carries API Gateway's request ID as its correlation ID.
          const events = cases[index]?.events ?? [];
          const correlationIds = new Map(
            run.invocations.map((invocation, at) => [invocation.requestId, events[at]?.requestContext.requestId]),
          );
          const records = logRecords(run).filter((record) => correlationIds.has(String(record.function_request_id)));
          expect(records.length).toBeGreaterThan(0);
          for (const record of records) {
            expect(record.correlation_id).toBe(correlationIds.get(String(record.function_request_id)));
          }
          for (const result of answers(run) as APIGatewayProxyResult[]) {
            expect(result.statusCode, describeRun(run)).toBe(500);
            expect(header(result, 'cache-control')).toBe('no-store');
            expect(bodyOf(result)).toMatchObject({
              error: 'connector_misconfigured',
              error_description: expect.stringContaining('tokenUrl'),
            });
          }
          // The real logger ran with the invocation's context injected.
          const requestIds = logRecords(run).map((record) => record.function_request_id);
          for (const invocation of run.invocations) expect(requestIds).toContain(invocation.requestId);
        }
        expect(tripwire.connections() - before).toBe(0);
      },
      RUN_TIMEOUT_MS,
    );

    it(
      'answers 403 access_denied alike to an unknown connector and to a caller the connector does not allow',
      async () => {
        // Prepare
        const connectorId = 'artifact-allowed-only';
        const cases = apiFunctions().map((fn) => {
          const family = familyOf(fn);
          plant(family, connectorId, connectorDocument(family, `http://127.0.0.1:${tripwire.port}/token`));
          const [route] = fn.routes.filter((candidate) => candidate.httpMethod === 'GET');
          if (route === undefined) throw new Error(`${fn.logicalId} has no GET route`);
          const events = [
            restApiEvent(stack.deployment, route, {
              pathParameters: { connectorId: 'artifact-missing' },
              caller: CALLER,
            }),
            restApiEvent(stack.deployment, route, { pathParameters: { connectorId }, caller: STRANGER }),
          ];
          return { fn, events };
        });

        // Act
        const runs = await Promise.all(cases.map(({ fn, events }) => runner.run(fn, events)));

        // Assess
        for (const run of runs) {
          expectCleanRun(stack, run, 2);
          const [unknown, refused] = answers(run) as APIGatewayProxyResult[];
          for (const result of [unknown, refused]) {
            expect(result?.statusCode, describeRun(run)).toBe(403);
            expect(result && header(result, 'cache-control')).toBe('no-store');
            expect(result && bodyOf(result)).toMatchObject({ error: 'access_denied' });
          }
          expect(unknown?.body).toBe(refused?.body);
        }
      },
      RUN_TIMEOUT_MS,
    );
  });

  describe('EventBridge Scheduler events', () => {
    it(
      "turns a connector's health from ok to failing, logged and measured, and answers its report",
      async () => {
        // Prepare
        const connectorId = 'artifact-rotating';
        const connector = `refresh-token/${connectorId}`;
        plant(
          'refresh-token',
          connectorId,
          connectorDocument('refresh-token', `https://127.0.0.1:${tripwire.port}/token`, PLANTED.rotatingRefreshToken),
        );
        const before = tripwire.connections();

        // Act
        const runs = await Promise.all(
          scheduledFunctions().map((fn) => {
            // What each schedule sends: the full reconciliation, the rotation (no input), the reconciliation.
            const byInput = (wanted: unknown) =>
              fn.schedules.find((schedule) => JSON.stringify(schedulerEvent(schedule)) === JSON.stringify(wanted));
            const full = byInput({ reconcile: { full: true } });
            const rotation = byInput({});
            if (full === undefined || rotation === undefined) throw new Error(`${fn.logicalId}: a schedule is missing`);
            // In one container: the full reconciliation puts the connector on the schedule; then two scheduled runs,
            // the change, then one while the connector waits out its backoff.
            return runner.run(fn, [schedulerEvent(full), schedulerEvent(rotation), schedulerEvent(rotation)]);
          }),
        );

        // Assess
        for (const run of runs) {
          expectCleanRun(stack, run, 3);
          const [, first, second] = answers(run) as { health: { connector: string }[] }[];
          expect(
            first?.health.find((entry) => entry.connector === connector),
            describeRun(run),
          ).toMatchObject({
            state: 'failing',
            consecutiveFailures: 1,
            lastError: 'connector_misconfigured',
            nextAttemptAt: expect.any(String),
          });
          // Waiting out its backoff, it is not due: the second run does not even read it.
          expect(second?.health.map((entry) => entry.connector)).not.toContain(connector);

          const changes = logRecords(run).filter(
            (record) => record.message === 'connector health changed' && record.connector === connector,
          );
          expect(changes, describeRun(run)).toEqual([
            expect.objectContaining({
              level: 'WARN',
              service: run.env.POWERTOOLS_SERVICE_NAME,
              from: 'ok',
              to: 'failing',
              lastError: 'connector_misconfigured',
              function_name: run.fn.name,
              function_request_id: run.invocations[1]?.requestId,
            }),
          ]);

          const blobs = metricBlobs(run);
          expect(blobs, 'one EMF blob per scheduled run (the reconciliation records none)').toHaveLength(2);
          const firstRun = emittedMetrics({ ...run, records: blobs.slice(0, 1) });
          const sum = (name: string) =>
            firstRun
              .filter((metric) => metric.name === name)
              .reduce((total, metric) => total + metric.values.reduce((a, b) => a + b, 0), 0);
          expect(new Set(firstRun.map((metric) => metric.namespace))).toEqual(
            new Set([run.env.POWERTOOLS_METRICS_NAMESPACE]),
          );
          expect(firstRun.every((metric) => metric.dimensions.service === run.env.POWERTOOLS_SERVICE_NAME)).toBe(true);
          expect(sum('HealthStateChanges')).toBeGreaterThanOrEqual(1);
          expect(sum('ScheduledRunFailures')).toBeGreaterThanOrEqual(1);
          // Every alarm on a scheduled-run metric watches one it publishes: namespace, name and dimensions.
          const published = emittedMetrics(run).map(({ namespace, name, dimensions }) => ({
            namespace,
            name,
            dimensions,
          }));
          for (const watched of customAlarmMetrics(stack).filter(({ name }) => !VEND_METRICS.has(name))) {
            expect(published).toContainEqual(watched);
          }
        }
        expect(tripwire.connections() - before).toBe(0);
      },
      RUN_TIMEOUT_MS,
    );
  });

  /*
   * Under the AWS network policy no token request of a function can succeed here (loopback is refused, and nothing
   * else is reachable), so no bundle ever seals a value in these tests: GenerateDataKey by a function is not
   * exercised. What is: the key's ARN reaching every function, a bundle's KMS client reaching KMS through the SDK's own
   * endpoint variable, Decrypt of values sealed as the vendor seals them (by the sealer and store of the source tree),
   * the binding to item and field, the key policy against the contexts the bundles send, and the table's content.
   */
  describe('Tokens at rest: the TokenKey', () => {
    const SERVED = 'artifact-sealed';
    const COPIED = 'artifact-sealed-copy';
    const FOREIGN = 'artifact-sealed-foreign';
    const FIELD = 'token-vendor:field';
    const FAMILY_CONTEXT = 'token-vendor:family';
    const ITEM = 'token-vendor:item';
    const harnessCredentials = { accessKeyId: 'harness', secretAccessKey: 'harness' };

    it('gives every function the ARN of the one key of the template, which the loopback KMS holds', () => {
      // Act
      const keyIds = stack.functions.map((fn) => [fn.logicalId, resolveVariables(stack, fn).TOKEN_VENDOR_TOKEN_KEY_ID]);

      // Assess
      expect(stack.keys).toHaveLength(1);
      const [key] = stack.keys;
      const { region, accountId } = stack.deployment;
      expect(key?.arn).toMatch(
        new RegExp(`^arn:aws:kms:${region}:${accountId}:key/[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$`),
      );
      expect(cloud.kms.keys).toEqual(new Set([key?.arn]));
      expect(keyIds).toEqual(stack.functions.map((fn) => [fn.logicalId, key?.arn]));
      // CloudFormation's other references to a key: its key ID, which KMS takes like the ARN.
      const logicalId = key?.logicalId ?? '';
      expect(stack.resolver.resolve({ Ref: logicalId }, 'test')).toBe(key?.keyId);
      expect(stack.resolver.resolve({ 'Fn::GetAtt': [logicalId, 'KeyId'] }, 'test')).toBe(key?.keyId);
      expect(key?.arn.endsWith(`:key/${key.keyId}`)).toBe(true);
    });

    it(
      'serves a token sealed under the key, opened by KMS Decrypt under its family; one copied to another item or under another key is not',
      async () => {
        // Prepare
        const [key] = stack.keys;
        const [table] = stack.tables;
        if (key === undefined || table === undefined) throw new Error('the template has no key or no table');
        const { region, accountId } = stack.deployment;
        const foreignArn = `arn:aws:kms:${region}:${accountId}:key/00000000-0000-4000-a000-0000000000f0`;
        cloud.kms.addKey(foreignArn);
        const kms = new KMS({ endpoint: cloud.kms.endpoint, region, credentials: harnessCredentials });
        const dynamodb = new DynamoDBClient({
          endpoint: cloud.dynamodb.endpoint,
          region,
          credentials: harnessCredentials,
        });
        const storeUnder = (arn: string) =>
          new DynamoDBTokenStore({
            tableName: table.name,
            client: dynamodb,
            sealer: new EncryptionSdkSealer(new KmsKeyringNode({ generatorKeyId: arn, clientProvider: () => kms })),
          });
        const store = storeUnder(key.arn);
        const foreignStore = storeUnder(foreignArn);
        const now = Date.now();
        const before = { kms: cloud.kms.requests.length, connections: tripwire.connections() };
        const cases = await Promise.all(
          apiFunctions().map(async (fn) => {
            const family = familyOf(fn);
            // Passes the checks made before the table is read; a fetch would be refused at connect time (localhost
            // resolves to loopback), so a token not served from the table fails the request, nothing sent.
            const document = connectorDocument(family, `https://localhost:${tripwire.port}/token`);
            for (const connectorId of [SERVED, COPIED, FOREIGN]) plant(family, connectorId, document);
            const tokenKey = (connectorId: string) => tokenKeyOf(refKey({ family, connectorId }));
            const served = parseConnector({ family, connectorId: SERVED }, JSON.stringify(document));
            const token = {
              accessToken: SEALED_TOKENS[family],
              tokenType: 'Bearer',
              scope: undefined,
              issuedAt: now,
              expiresAt: now + 3_600_000,
              refreshAt: now + 3_000_000,
              tokenRevision: served.tokenRevision,
            };
            await store.putToken(tokenKey(SERVED), token, 1, profileOf(served));
            // The same item under another connector's key: its sealed value is bound to the first item.
            const { Item } = await dynamodb.send(
              new GetItemCommand({
                TableName: table.name,
                Key: { [TABLE_KEY]: { S: tokenItemKey(tokenKey(SERVED)) } },
                ConsistentRead: true,
              }),
            );
            await dynamodb.send(
              new PutItemCommand({
                TableName: table.name,
                Item: { ...Item, [TABLE_KEY]: { S: tokenItemKey(tokenKey(COPIED)) } },
              }),
            );
            await foreignStore.putToken(tokenKey(FOREIGN), token, 1, profileOf(served));
            const [route] = fn.routes.filter((candidate) => candidate.httpMethod === 'GET');
            if (route === undefined) throw new Error(`${fn.logicalId} has no GET route`);
            const events = [SERVED, COPIED, FOREIGN].map((connectorId) =>
              restApiEvent(stack.deployment, route, { pathParameters: { connectorId }, caller: CALLER }),
            );
            return { fn, family, events, servedItem: tokenItemKey(tokenKey(SERVED)) };
          }),
        );
        kms.destroy();
        dynamodb.destroy();

        // Act
        const runs = await Promise.all(cases.map(({ fn, events }) => runner.run(fn, events)));

        // Assess
        for (const [index, run] of runs.entries()) {
          const { family } = cases[index] ?? {};
          expectCleanRun(stack, run, 3);
          const [served, copied, foreign] = answers(run) as APIGatewayProxyResult[];
          expect(served?.statusCode, describeRun(run)).toBe(200);
          expect(served && header(served, 'cache-control')).toBe('no-store');
          expect(served && bodyOf(served)).toMatchObject({
            access_token: family === undefined ? '' : SEALED_TOKENS[family],
            token_type: 'Bearer',
          });
          // Not served from the table, so fetched: refused when the token URL's name resolved to loopback.
          for (const refused of [copied, foreign]) {
            expect(refused?.statusCode, describeRun(run)).toBe(500);
            expect(refused && bodyOf(refused)).toEqual({
              error: 'connector_misconfigured',
              error_description: expect.stringContaining('resolves to an address the vendor may not call'),
            });
          }
        }
        // The bundles' KMS calls (their credentials): Decrypt only, under the template's key, each with the context of
        // the function's own family (the item is sealed with the value), which the key policy allows its role.
        const calls = cloud.kms.requests
          .slice(before.kms)
          .filter((request) => request.accessKeyId === FUNCTION_CREDENTIALS.accessKeyId);
        const sealedFor = (family: string) => ({ [FAMILY_CONTEXT]: family, [FIELD]: 'accessToken' });
        for (const { fn, family } of cases) {
          expect(calls).toContainEqual({
            operation: 'Decrypt',
            keyId: key.arn,
            keyArn: key.arn,
            encryptionContext: sealedFor(family),
            accessKeyId: FUNCTION_CREDENTIALS.accessKeyId,
            error: undefined,
          });
          expect(keyPolicyAllows(stack, fn, 'kms:Decrypt', sealedFor(family))).toBe(true);
        }
        for (const call of calls) {
          expect(call).toMatchObject({ operation: 'Decrypt', keyArn: key.arn, error: undefined });
          const owner = cases.find(({ family }) => call.encryptionContext[FAMILY_CONTEXT] === family);
          expect(owner, JSON.stringify(call)).toBeDefined();
          if (owner !== undefined)
            expect(keyPolicyAllows(stack, owner.fn, 'kms:Decrypt', call.encryptionContext)).toBe(true);
        }
        // The evaluation is not trivially true: no vend function may open another family's values, sealed either way.
        for (const { fn, family } of cases) {
          const other = cases.find((candidate) => candidate.family !== family);
          if (other !== undefined) {
            expect(keyPolicyAllows(stack, fn, 'kms:Decrypt', sealedFor(other.family))).toBe(false);
            expect(
              keyPolicyAllows(stack, fn, 'kms:Decrypt', { [ITEM]: other.servedItem, [FIELD]: 'accessToken' }),
            ).toBe(false);
            expect(keyPolicyAllows(stack, fn, 'kms:GenerateDataKey', sealedFor(other.family))).toBe(false);
          }
        }
        expect(tripwire.connections() - before.connections).toBe(0);
      },
      RUN_TIMEOUT_MS,
    );

    it('holds no secret and no token value in clear after every flow above; every sealed value names a key of KMS', async () => {
      // Act
      const scanned = await scanTables(stack, cloud);

      // Assess
      const items = scanned.flatMap((table) => table.items);
      const text = JSON.stringify(scanned);
      // What the functions wrote themselves: connector state (leases, failures) of the flows above.
      const written = items.filter((item) => item[TABLE_KEY]?.S?.startsWith('c#') && item.failureCode !== undefined);
      expect(written.length, 'connector state the functions wrote in the flows above').toBeGreaterThan(0);
      expect(NEVER_LOGGED.filter((value) => text.includes(value))).toEqual([]);
      const sealed = items.flatMap((item) =>
        [item.accessToken?.S, item.chainToken?.S, item.headToken?.M?.accessToken?.S].filter(
          (value): value is string => value !== undefined,
        ),
      );
      // Those of the tokens planted above: no function seals anything here (see this block's comment); one that does
      // some day is held to the same rule.
      expect(sealed.length, 'sealed values in the table').toBeGreaterThan(0);
      for (const value of sealed) {
        const message = Buffer.from(value, 'base64');
        expect([...cloud.kms.keys].some((arn) => message.includes(Buffer.from(arn)))).toBe(true);
      }
    });
  });

  // Last, so that the keys above are the template's alone.
  describe('Signed assertions: KMS Sign from the bundle', () => {
    it(
      "signs the jwt-bearer function's assertion with the KMS key the connector names, and refuses a denied key by field",
      async () => {
        // Prepare
        const account = 'arn:aws:kms:us-east-1:123456789012:key';
        const signingArn = `${account}/2c0e5f1a-7b3d-4e29-9a61-8d4c3b2a1f00`;
        const deniedArn = `${account}/3c0e5f1a-7b3d-4e29-9a61-8d4c3b2a1f00`;
        cloud.kms.addSigningKey(signingArn, 'ECC_NIST_P256');
        cloud.kms.addSigningKey(deniedArn, 'ECC_NIST_P256');
        cloud.kms.denyKey(deniedArn);
        const fn = apiFunctions().find((candidate) => familyOf(candidate) === 'jwt-bearer');
        if (fn === undefined) throw new Error('no jwt-bearer function in the template');
        const [route] = fn.routes.filter((candidate) => candidate.httpMethod === 'GET');
        if (route === undefined) throw new Error(`${fn.logicalId} has no GET route`);
        for (const [connectorId, kmsKeyId] of [
          ['artifact-kms-signed', signingArn],
          ['artifact-kms-denied', deniedArn],
        ] as const) {
          plant('jwt-bearer', connectorId, {
            ...connectorDocument('jwt-bearer', `https://localhost:${tripwire.port}/token`),
            signingKey: { kmsKeyId },
          });
        }
        const events = ['artifact-kms-signed', 'artifact-kms-denied'].map((connectorId) =>
          restApiEvent(stack.deployment, route, { pathParameters: { connectorId }, caller: CALLER }),
        );
        const before = { sign: cloud.kms.requests.length, connections: tripwire.connections() };

        // Act
        const run = await runner.run(fn, events);

        // Assess
        expectCleanRun(stack, run, 2);
        const [signed, denied] = answers(run) as APIGatewayProxyResult[];
        // Signed, then stopped where the deployed network policy stops any loopback token URL.
        expect(signed?.statusCode, describeRun(run)).toBe(500);
        expect(signed && bodyOf(signed)).toMatchObject({ error_description: expect.stringContaining('tokenUrl') });
        expect(denied?.statusCode, describeRun(run)).toBe(500);
        expect(denied && bodyOf(denied)).toMatchObject({
          error: 'connector_misconfigured',
          error_description: expect.stringContaining('"signingKey"'),
        });
        const signs = cloud.kms.requests.slice(before.sign).filter((request) => request.operation === 'Sign');
        // One call each: the SDK does not try an access denial again.
        expect(signs.map(({ keyId, error }) => ({ keyId, error }))).toEqual([
          { keyId: signingArn, error: undefined },
          { keyId: deniedArn, error: 'AccessDeniedException' },
        ]);
        expect(tripwire.connections() - before.connections).toBe(0);
      },
      RUN_TIMEOUT_MS,
    );
  });
});
