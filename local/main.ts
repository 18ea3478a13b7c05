import { generateKeyPairSync } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { z } from 'zod';
import { rotateFunction, tokenFunction } from '../functions/lambda/entry.ts';
import { EncryptionSdkSealer } from '../shared/adapters/encryption-sdk-sealer.ts';
import type { Family } from '../shared/core/identifiers.ts';
import { JWT_BEARER_GRANT_TYPE } from '../shared/core/identifiers.ts';
import { DEFAULT_CONNECTORS_DIR } from '../shared/core/settings.ts';
import { createApiGateway, listen, type ProxyHandler } from './api-gateway.ts';
import { type DemoAuthServer, startDemoAuthServer } from './demo-auth-server.ts';
import { ensureTable, startEmbeddedDynamoDB } from './dynamodb.ts';
import { claimStateDir, type StateClaim } from './instance.ts';
import { FunctionPool, startInvokeApi } from './lambda-runtime.ts';
import { LOCAL_NETWORK } from './network.ts';
import { parseSettings } from './settings.ts';
import type { Principals } from './sigv4.ts';
import { LOCAL_KEY_FILE, loadLocalTokenKey } from './token-key.ts';

/** The built-in development principal (CONTRACT §4), used when no principals file is given. */
export const DEV_PRINCIPAL = {
  accessKeyId: 'AKIALOCALDEVELOPER',
  secretAccessKey: 'local-dev-only',
  arn: 'arn:aws:iam::000000000000:user/local-developer',
} as const;

const principalsSchema = z.record(
  z.string().min(1),
  z.object({ secretAccessKey: z.string().min(1), arn: z.string().regex(/^arn:aws[a-z-]*:(iam|sts)::\d{12}:/) }),
);

async function loadPrincipals(path: string | undefined): Promise<Principals> {
  if (path === undefined) {
    return { [DEV_PRINCIPAL.accessKeyId]: { secretAccessKey: DEV_PRINCIPAL.secretAccessKey, arn: DEV_PRINCIPAL.arn } };
  }
  let json: unknown;
  try {
    json = JSON.parse(await readFile(path, 'utf8'));
  } catch (error) {
    // V8's message would quote the file, secret access keys and all.
    if (error instanceof SyntaxError) throw new Error(`TOKEN_VENDOR_LOCAL_PRINCIPALS: ${path} is not valid JSON`);
    throw error;
  }
  const parsed = principalsSchema.safeParse(json);
  if (!parsed.success) throw new Error(`TOKEN_VENDOR_LOCAL_PRINCIPALS: ${path} is not a valid principals file`);
  return parsed.data;
}

/** The demo's JWT bearer issuer; its key pair is made at each start and its private key lives in the demo connector. */
const DEMO_ISSUER = 'demo-issuer';

/** Writes the demo connectors, pointing at the demo authorization server, into a scratch folder. */
async function writeDemoConnectors(dir: string, demo: DemoAuthServer, signingKeyPem: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  const common = {
    tokenUrl: demo.tokenUrl,
    clientId: 'demo-client',
    clientSecret: 'demo-secret',
    allowedPrincipals: [DEV_PRINCIPAL.arn],
  };
  const documents: Record<Family, object> = {
    'client-credentials': { grantType: 'client_credentials', ...common, scope: 'read write' },
    password: { grantType: 'password', ...common, username: 'demo-user', password: 'demo-password' },
    'refresh-token': {
      grantType: 'refresh_token',
      ...common,
      refreshToken: demo.issueRefreshToken('demo-client', 'demo-user'),
    },
    'jwt-bearer': {
      grantType: 'jwt_bearer',
      tokenUrl: demo.tokenUrl,
      clientId: 'demo-jwt-client',
      assertionIssuer: DEMO_ISSUER,
      assertionSubject: 'demo-user',
      signingKey: { privateKeyPem: signingKeyPem },
      signingAlgorithm: 'ES256',
      allowedPrincipals: [DEV_PRINCIPAL.arn],
    },
  };
  for (const [family, document] of Object.entries(documents)) {
    await mkdir(join(dir, family), { recursive: true });
    await writeFile(join(dir, family, 'demo.json'), `${JSON.stringify(document, null, 2)}\n`, { mode: 0o600 });
  }
}

const isLoopbackUrl = (url: string) => /^https?:\/\/(127(\.\d+){3}|localhost|\[::1\])(:\d+)?(\/|$)/.test(url);

/** API Gateway gives up on an integration after 29 s; the functions' timeout in the construct is the same. */
const API_TIMEOUT_MS = 29_000;
/** The scheduled function's timeout in the construct. */
const ROTATE_TIMEOUT_MS = 120_000;
const FUNCTION_NAMES: Record<Family | 'rotate', string> = {
  'client-credentials': 'token-vendor-client-credentials',
  password: 'token-vendor-password',
  'refresh-token': 'token-vendor-refresh-token',
  'jwt-bearer': 'token-vendor-jwt-bearer',
  rotate: 'token-vendor-rotate',
};
/** EventBridge Scheduler's event to the scheduled function (its default payload). */
const SCHEDULED_EVENT = {};
/** The reconciliation's scheduled event: sync the connectors whose documents changed (all of them, at first). */
const reconcileEvent = (full: boolean) => ({ reconcile: { full } });

/**
 * The functions, as local mode runs them: in this process by default (a long-lived server: refresh ahead runs
 * detached), or with `TOKEN_VENDOR_LAMBDA=1` each in its own pool of Lambda-like containers that freeze between
 * invocations, reached through a loopback Lambda Invoke API as in AWS.
 */
async function startFunctions(
  lambda: boolean,
  keyFile: string,
  closers: (() => Promise<void>)[],
): Promise<{ handlers: Record<Family, ProxyHandler>; rotate: (full: boolean) => Promise<unknown> }> {
  if (!lambda) {
    const overrides = {
      network: LOCAL_NETWORK,
      sealer: EncryptionSdkSealer.localKey(await loadLocalTokenKey(keyFile)),
    };
    const handler = (family: Family) => tokenFunction(family, process.env, overrides) as unknown as ProxyHandler;
    const rotate = rotateFunction(process.env, overrides);
    return {
      handlers: {
        'client-credentials': handler('client-credentials'),
        password: handler('password'),
        'refresh-token': handler('refresh-token'),
        'jwt-bearer': handler('jwt-bearer'),
      },
      rotate: async (full: boolean) => {
        await rotate(reconcileEvent(full), {} as never);
        return rotate(SCHEDULED_EVENT, {} as never);
      },
    };
  }
  const pools = new Map<string, FunctionPool>();
  const invokeApi = await startInvokeApi(pools, (name, error) => {
    process.stderr.write(`asynchronous invocation of ${name} failed: ${error instanceof Error ? error.message : ''}\n`);
  });
  closers.push(() => invokeApi.close());
  // What the construct gives the vend functions: the refresher to hand due tokens to, through the Invoke API.
  const env = {
    ...process.env,
    AWS_ENDPOINT_URL_LAMBDA: invokeApi.endpoint,
    TOKEN_VENDOR_REFRESH_FUNCTION: FUNCTION_NAMES.rotate,
    [LOCAL_KEY_FILE]: keyFile,
  };
  await loadLocalTokenKey(keyFile);
  const pool = (entry: Family | 'rotate', timeoutMs: number) => {
    const functionPool = new FunctionPool({ name: FUNCTION_NAMES[entry], entry, timeoutMs }, env);
    pools.set(FUNCTION_NAMES[entry], functionPool);
    functionPool.warm();
    return functionPool;
  };
  const proxy =
    (functionPool: FunctionPool): ProxyHandler =>
    async (event) =>
      (await functionPool.invoke(event)) as Awaited<ReturnType<ProxyHandler>>;
  const handlers = {
    'client-credentials': proxy(pool('client-credentials', API_TIMEOUT_MS)),
    password: proxy(pool('password', API_TIMEOUT_MS)),
    'refresh-token': proxy(pool('refresh-token', API_TIMEOUT_MS)),
    'jwt-bearer': proxy(pool('jwt-bearer', API_TIMEOUT_MS)),
  };
  const rotatePool = pool('rotate', ROTATE_TIMEOUT_MS);
  closers.push(async () => {
    for (const functionPool of pools.values()) functionPool.close();
  });
  return {
    handlers,
    rotate: async (full: boolean) => {
      await rotatePool.invoke(reconcileEvent(full));
      return rotatePool.invoke(SCHEDULED_EVENT);
    },
  };
}

async function main(): Promise<void> {
  const settings = parseSettings(process.env);
  const closers: (() => Promise<void>)[] = [];
  const stateDir = resolve(settings.TOKEN_VENDOR_STATE_DIR);

  // Connectors from a folder (given, or ./connectors), else from Secrets Manager under a prefix, else the demo.
  const fromSecrets =
    settings.TOKEN_VENDOR_SECRET_PREFIX !== undefined && settings.TOKEN_VENDOR_CONNECTORS_DIR === undefined;
  let connectorsDir = resolve(settings.TOKEN_VENDOR_CONNECTORS_DIR ?? DEFAULT_CONNECTORS_DIR);
  const demoMode =
    settings.TOKEN_VENDOR_DEMO === '1' ||
    (settings.TOKEN_VENDOR_DEMO === undefined &&
      !fromSecrets &&
      settings.TOKEN_VENDOR_CONNECTORS_DIR === undefined &&
      !existsSync(connectorsDir));
  // The embedded DynamoDB's files and the demo connectors are this process's alone: take the state folder before
  // writing anything, so a second `npm start` (on a busy port or not) leaves a running one's untouched.
  let claim: StateClaim | undefined;
  if (settings.AWS_ENDPOINT_URL_DYNAMODB === undefined || demoMode) claim = await claimStateDir(stateDir);
  let demo: DemoAuthServer | undefined;
  if (demoMode) {
    const signingKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    demo = await startDemoAuthServer({
      clients: [
        { id: 'demo-client', secret: 'demo-secret', grants: ['client_credentials', 'password', 'refresh_token'] },
        { id: 'demo-jwt-client', grants: [JWT_BEARER_GRANT_TYPE] },
      ],
      users: { 'demo-user': 'demo-password' },
      assertionIssuers: { [DEMO_ISSUER]: { clientId: 'demo-jwt-client', publicKey: signingKey.publicKey } },
    });
    closers.push(() => (demo as DemoAuthServer).close());
    connectorsDir = join(stateDir, 'demo-connectors');
    const pem = signingKey.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    await writeDemoConnectors(connectorsDir, demo, pem);
  }

  let endpoint = settings.AWS_ENDPOINT_URL_DYNAMODB;
  if (endpoint === undefined) {
    const path = join(stateDir, 'dynamodb');
    await mkdir(path, { recursive: true });
    const embedded = await startEmbeddedDynamoDB({ path });
    closers.push(() => embedded.close());
    endpoint = embedded.endpoint;
  }
  // A loopback AWS endpoint accepts any signature; the SDK still needs some credentials to sign with.
  const loopbackEndpoints = [endpoint, settings.AWS_ENDPOINT_URL_SECRETS_MANAGER, settings.AWS_ENDPOINT_URL_KMS].filter(
    (url): url is string => url !== undefined && isLoopbackUrl(url),
  );
  if (loopbackEndpoints.length > 0 && process.env.AWS_ACCESS_KEY_ID === undefined) {
    process.env.AWS_ACCESS_KEY_ID = 'local';
    process.env.AWS_SECRET_ACCESS_KEY = 'local';
  }
  // The functions read these as a Lambda container reads its environment.
  Object.assign(process.env, {
    AWS_ENDPOINT_URL_DYNAMODB: endpoint,
    AWS_REGION: settings.AWS_REGION,
    TOKEN_VENDOR_TABLE: settings.TOKEN_VENDOR_TABLE,
    // CloudWatch metrics (EMF lines on stdout) mean nothing on one machine; set it to false to see them.
    POWERTOOLS_METRICS_DISABLED: process.env.POWERTOOLS_METRICS_DISABLED ?? 'true',
  });
  if (fromSecrets && !demoMode) delete process.env.TOKEN_VENDOR_CONNECTORS_DIR;
  else process.env.TOKEN_VENDOR_CONNECTORS_DIR = connectorsDir;
  const dynamodb = new DynamoDBClient({});
  await ensureTable(dynamodb, settings.TOKEN_VENDOR_TABLE);
  dynamodb.destroy();

  const keyFile = join(stateDir, 'token-key');
  const { handlers, rotate } = await startFunctions(settings.TOKEN_VENDOR_LAMBDA === '1', keyFile, closers);

  const principals = await loadPrincipals(settings.TOKEN_VENDOR_LOCAL_PRINCIPALS);
  const server = createApiGateway({ handlers, principals, region: settings.AWS_REGION });
  const port = await listen(server, settings.PORT);
  closers.unshift(
    () =>
      new Promise((done) => {
        server.closeAllConnections();
        server.close(() => done());
      }),
  );

  let timer: NodeJS.Timeout | undefined;
  if (settings.TOKEN_VENDOR_ROTATE_INTERVAL_SECONDS > 0) {
    let running = false;
    // The first run syncs every connector (what changed while local mode was stopped), later ones what changed.
    let runs = 0;
    timer = setInterval(() => {
      if (running) return;
      running = true;
      rotate(runs++ === 0)
        .catch((error: unknown) => {
          process.stderr.write(
            `scheduled rotation failed: ${error instanceof Error ? `${error.name}: ${error.message}` : 'unknown'}\n`,
          );
        })
        .finally(() => {
          running = false;
        });
    }, settings.TOKEN_VENDOR_ROTATE_INTERVAL_SECONDS * 1000);
  }

  const shutdown = () => {
    if (timer !== undefined) clearInterval(timer);
    Promise.allSettled(closers.map((close) => close())).finally(() => process.exit(0));
  };
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);

  const url = `http://127.0.0.1:${port}`;
  // What `token-vendor status` reads to reach this instance's table.
  await claim?.update({
    url,
    dynamodbEndpoint: endpoint,
    table: settings.TOKEN_VENDOR_TABLE,
    region: settings.AWS_REGION,
    ...(fromSecrets && !demoMode ? {} : { connectorsDir }),
  });
  if (demo !== undefined) {
    process.stdout.write(
      [
        '',
        '*** DEMO MODE: no ./connectors folder and no TOKEN_VENDOR_CONNECTORS_DIR, so a demo authorization server',
        `*** (NOT a real identity provider) runs at ${demo.tokenUrl} with demo connectors in ${connectorsDir}`,
        `*** Try: curl --aws-sigv4 "aws:amz:${settings.AWS_REGION}:execute-api" --user "${DEV_PRINCIPAL.accessKeyId}:${DEV_PRINCIPAL.secretAccessKey}" ${url}/tokens/client-credentials/demo`,
        '',
      ].join('\n'),
    );
  }
  const how = settings.TOKEN_VENDOR_LAMBDA === '1' ? ', with Lambda semantics' : '';
  const where =
    fromSecrets && !demoMode ? `Secrets Manager under ${settings.TOKEN_VENDOR_SECRET_PREFIX}/` : connectorsDir;
  process.stdout.write(`token vendor (local mode${how}; connectors from ${where}) listening on ${url}\n`);
  process.stdout.write(`token table ${settings.TOKEN_VENDOR_TABLE} in DynamoDB at ${endpoint}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`token vendor failed to start: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
