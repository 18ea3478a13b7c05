import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { z } from 'zod';
import type { Family } from '../shared/core/identifiers.ts';
import { DEFAULT_CONNECTORS_DIR, DEFAULT_TABLE_NAME } from '../shared/core/settings.ts';
import { createApiGateway, listen, type ProxyHandler } from './api-gateway.ts';
import { type DemoAuthServer, startDemoAuthServer } from './demo-auth-server.ts';
import { ensureTable, startEmbeddedDynamoDB } from './dynamodb.ts';
import type { Principals } from './sigv4.ts';

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

const settingsSchema = z.object({
  PORT: z.coerce.number().int().min(0).max(65535).default(3000),
  TOKEN_VENDOR_CONNECTORS_DIR: z.string().min(1).optional(),
  TOKEN_VENDOR_LOCAL_PRINCIPALS: z.string().min(1).optional(),
  TOKEN_VENDOR_ROTATE_INTERVAL_SECONDS: z.coerce.number().min(0).default(60),
  AWS_REGION: z.string().min(1).default('us-east-1'),
  AWS_ENDPOINT_URL_DYNAMODB: z.string().url().optional(),
  TOKEN_VENDOR_TABLE: z.string().min(1).default(DEFAULT_TABLE_NAME),
  TOKEN_VENDOR_DEMO: z.enum(['0', '1']).optional(),
});

async function loadPrincipals(path: string | undefined): Promise<Principals> {
  if (path === undefined) {
    return { [DEV_PRINCIPAL.accessKeyId]: { secretAccessKey: DEV_PRINCIPAL.secretAccessKey, arn: DEV_PRINCIPAL.arn } };
  }
  const parsed = principalsSchema.safeParse(JSON.parse(await readFile(path, 'utf8')));
  if (!parsed.success) throw new Error(`TOKEN_VENDOR_LOCAL_PRINCIPALS: ${path} is not a valid principals file`);
  return parsed.data;
}

/** Writes the demo connectors, pointing at the demo authorization server, into a scratch folder. */
async function writeDemoConnectors(dir: string, demo: DemoAuthServer): Promise<void> {
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
  };
  for (const [family, document] of Object.entries(documents)) {
    await mkdir(join(dir, family), { recursive: true });
    await writeFile(join(dir, family, 'demo.json'), `${JSON.stringify(document, null, 2)}\n`, { mode: 0o600 });
  }
}

const isLoopbackUrl = (url: string) => /^https?:\/\/(127(\.\d+){3}|localhost|\[::1\])(:\d+)?(\/|$)/.test(url);

async function main(): Promise<void> {
  const settings = settingsSchema.parse(process.env);
  const closers: (() => Promise<void>)[] = [];

  let connectorsDir = resolve(settings.TOKEN_VENDOR_CONNECTORS_DIR ?? DEFAULT_CONNECTORS_DIR);
  const demoMode =
    settings.TOKEN_VENDOR_DEMO === '1' ||
    (settings.TOKEN_VENDOR_DEMO === undefined &&
      settings.TOKEN_VENDOR_CONNECTORS_DIR === undefined &&
      !existsSync(connectorsDir));
  let demo: DemoAuthServer | undefined;
  if (demoMode) {
    demo = await startDemoAuthServer({
      clients: [
        { id: 'demo-client', secret: 'demo-secret', grants: ['client_credentials', 'password', 'refresh_token'] },
      ],
      users: { 'demo-user': 'demo-password' },
    });
    closers.push(() => (demo as DemoAuthServer).close());
    connectorsDir = resolve('.token-vendor', 'demo-connectors');
    await writeDemoConnectors(connectorsDir, demo);
  }

  let endpoint = settings.AWS_ENDPOINT_URL_DYNAMODB;
  if (endpoint === undefined) {
    const embedded = await startEmbeddedDynamoDB();
    closers.push(() => embedded.close());
    endpoint = embedded.endpoint;
  }
  // A loopback DynamoDB accepts any signature; the SDK still needs some credentials to sign with.
  if (isLoopbackUrl(endpoint) && process.env.AWS_ACCESS_KEY_ID === undefined) {
    process.env.AWS_ACCESS_KEY_ID = 'local';
    process.env.AWS_SECRET_ACCESS_KEY = 'local';
  }
  // The handler modules read these at import, exactly as a Lambda container reads its environment.
  Object.assign(process.env, {
    AWS_ENDPOINT_URL_DYNAMODB: endpoint,
    AWS_REGION: settings.AWS_REGION,
    TOKEN_VENDOR_CONNECTORS_DIR: connectorsDir,
    TOKEN_VENDOR_TABLE: settings.TOKEN_VENDOR_TABLE,
    // CloudWatch metrics (EMF lines on stdout) mean nothing on one machine; set it to false to see them.
    POWERTOOLS_METRICS_DISABLED: process.env.POWERTOOLS_METRICS_DISABLED ?? 'true',
  });
  const dynamodb = new DynamoDBClient({});
  await ensureTable(dynamodb, settings.TOKEN_VENDOR_TABLE);
  dynamodb.destroy();

  const load = async (name: string) => ((await import(`../functions/${name}.ts`)) as { handler: ProxyHandler }).handler;
  const handlers: Record<Family, ProxyHandler> = {
    'client-credentials': await load('client-credentials'),
    password: await load('password'),
    'refresh-token': await load('refresh-token'),
  };
  const rotate = (await import('../functions/rotate.ts')).handler;

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
    timer = setInterval(() => {
      if (running) return;
      running = true;
      rotate({}, {} as never)
        .catch(() => undefined)
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
  process.stdout.write(`token vendor (local mode) listening on ${url}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`token vendor failed to start: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
