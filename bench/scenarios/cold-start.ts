import { spawn } from 'node:child_process';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { build, type Metafile } from 'esbuild';
import { tokenFunction } from '../../functions/lambda/entry.ts';
import { ensureTable, startEmbeddedDynamoDB } from '../../local/dynamodb.ts';
import { createDynamoDBClient } from '../../shared/adapters/aws-clients.ts';
import { createHttpClient } from '../../shared/adapters/http-client.ts';
import type { HttpClient } from '../../shared/ports/http.ts';
import { startKmsServer } from '../../test/support/kms-server.ts';
import { startSecretsManagerServer } from '../../test/support/secrets-manager-server.ts';
import {
  BENCH_CALLER,
  type BenchOptions,
  benchConnector,
  type Defer,
  median,
  ms,
  NODE,
  ROOT,
  type Row,
  ratio,
  startBenchOidc,
  withCleanup,
} from '../support.ts';

/** The same banner the CDK construct puts on every bundle (infra/token-vendor-function.ts). */
const ESM_REQUIRE_SHIM = "import { createRequire } from 'module'; const require = createRequire(import.meta.url);";
const FUNCTIONS = ['client-credentials', 'password', 'refresh-token', 'jwt-bearer', 'rotate'] as const;
const SPAWN_TIMEOUT_MS = 15_000;

/**
 * Imports the bundle in a fresh process and prints how long the import (module initialization) took, then, when
 * given an event, how long the first invocation took and its status.
 */
const PROBE = [
  'const started = performance.now();',
  'const module = await import(process.env.BENCH_BUNDLE_URL);',
  'const initMs = performance.now() - started;',
  "if (typeof module.handler !== 'function') throw new Error('the bundle exports no handler');",
  'let firstMs = null;',
  'let status = null;',
  'if (process.env.BENCH_EVENT !== undefined) {',
  '  const invoked = performance.now();',
  "  const context = { awsRequestId: 'bench-1', functionName: 'bench', getRemainingTimeInMillis: () => 29_000 };",
  '  const result = await module.handler(JSON.parse(process.env.BENCH_EVENT), context);',
  '  firstMs = performance.now() - invoked;',
  '  status = result?.statusCode ?? null;',
  '  if (status !== 200) process.stderr.write(String(result?.body));',
  '}',
  'process.stdout.write(JSON.stringify({ initMs, firstMs, status }));',
  // The SDK keeps its connections open; the measure is taken.
  'process.exit(0);',
].join('\n');
const KEY_ARN = 'arn:aws:kms:us-east-1:111122223333:key/0b7e4c1a-9f2d-4e8b-a6c3-5d1f2e3a4b5c';
const CONNECTOR_ID = 'cold';
const SECRET_NAME = `token-vendor/client-credentials/${CONNECTOR_ID}`;
/** A vend by the bench caller, as API Gateway hands it to the function. */
const VEND_EVENT = {
  httpMethod: 'GET',
  resource: '/tokens/client-credentials/{connectorId}',
  pathParameters: { connectorId: CONNECTOR_ID },
  queryStringParameters: null,
  multiValueQueryStringParameters: null,
  requestContext: { identity: { userArn: BENCH_CALLER.arn, accountId: '111122223333' } },
};

/**
 * What a Lambda container of the vendor has in its environment at init (the table name, the token key, the refresher,
 * region, credentials). Init contacts neither KMS nor Lambda.
 */
const LAMBDA_ENV = {
  TOKEN_VENDOR_TABLE: 'token-vendor-tokens',
  TOKEN_VENDOR_TOKEN_KEY_ID: KEY_ARN,
  TOKEN_VENDOR_REFRESH_FUNCTION: 'token-vendor-rotate',
  AWS_REGION: 'us-east-1',
  AWS_DEFAULT_REGION: 'us-east-1',
  AWS_ACCESS_KEY_ID: 'AKIAIOSFODNN7EXAMPLE',
  AWS_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
  AWS_SESSION_TOKEN: 'bench',
  AWS_LAMBDA_FUNCTION_NAME: 'bench',
  POWERTOOLS_SERVICE_NAME: 'token-vendor',
  POWERTOOLS_METRICS_NAMESPACE: 'TokenVendor',
  POWERTOOLS_LOG_LEVEL: 'INFO',
};

interface Probe {
  readonly initMs: number;
  readonly firstMs: number | null;
  readonly status: number | null;
}

async function probe(bundle: string, sourceMaps: boolean, env: Record<string, string>, event?: object): Promise<Probe> {
  const child = spawn(NODE, ['--input-type=module', '-e', PROBE], {
    env: {
      PATH: process.env.PATH ?? '',
      ...LAMBDA_ENV,
      ...env,
      BENCH_BUNDLE_URL: pathToFileURL(bundle).href,
      ...(event === undefined ? {} : { BENCH_EVENT: JSON.stringify(event) }),
      // --enable-source-maps: stack traces point into the sources, at a cost at init.
      ...(sourceMaps ? { NODE_OPTIONS: '--enable-source-maps' } : {}),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString('utf8');
  });
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8');
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), SPAWN_TIMEOUT_MS);
  try {
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', resolve);
    });
    if (code !== 0) throw new Error(`probe of ${bundle} exited with ${String(code)}: ${stderr}`);
  } finally {
    clearTimeout(timer);
  }
  // The handler modules may log at init; the probe's JSON is the last thing written.
  const line = stdout.slice(stdout.lastIndexOf('{"initMs"'));
  const result = JSON.parse(line) as Probe;
  if (event !== undefined && result.status !== 200) {
    throw new Error(`first invocation of ${bundle} answered ${result.status}: ${stderr}`);
  }
  return result;
}

/**
 * AWS on loopback for a first vend: dynalite with the token table, KMS with the token key, Secrets Manager with a
 * client-credentials connector, oidc-provider, and a token already in the table (sealed), put there by a vend
 * in this process (which may call loopback), so that a container's first vend is a table hit, as on a new
 * container of a busy connector. Returns the environment that points a function at it.
 */
async function loopbackAws(defer: Defer): Promise<Record<string, string>> {
  const oidc = await startBenchOidc(defer);
  const dynamo = await startEmbeddedDynamoDB();
  defer(() => dynamo.close());
  const kms = await startKmsServer();
  defer(() => kms.close());
  kms.addKey(KEY_ARN);
  const secrets = await startSecretsManagerServer();
  defer(() => secrets.close());
  // A token URL the AWS network policy accepts (it is checked before the table is read); only the seeding vend
  // below calls it, through a client that sends the request to oidc-provider instead.
  secrets.put(SECRET_NAME, JSON.stringify(benchConnector('https://token.example.com/oauth/token')));
  const loopbackHttp = createHttpClient({ allowLoopback: true, allowPrivate: false });
  const http: HttpClient = (request) => loopbackHttp({ ...request, url: oidc.tokenUrl });
  const env = {
    AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint,
    AWS_ENDPOINT_URL_KMS: kms.endpoint,
    AWS_ENDPOINT_URL_SECRETS_MANAGER: secrets.endpoint,
    BENCH_FLOOR_SECRET: SECRET_NAME,
  };
  // The SDK clients read their endpoints and credentials from process.env.
  const saved = { ...process.env };
  Object.assign(process.env, LAMBDA_ENV, env);
  try {
    const client = createDynamoDBClient();
    await ensureTable(client, LAMBDA_ENV.TOKEN_VENDOR_TABLE);
    client.destroy();
    const vend = tokenFunction('client-credentials', process.env, { http });
    const seeded = await vend(
      VEND_EVENT as never,
      {
        awsRequestId: 'seed',
        functionName: 'bench',
        getRemainingTimeInMillis: () => 29_000,
      } as never,
    );
    if (seeded.statusCode !== 200) throw new Error(`seeding vend answered ${seeded.statusCode}: ${seeded.body}`);
  } finally {
    for (const name of Object.keys(process.env)) if (!(name in saved)) delete process.env[name];
    Object.assign(process.env, saved);
  }
  return env;
}

interface Measured {
  readonly name: string;
  readonly kb: number;
  readonly mapKb: number;
  readonly initMs: number[];
  readonly initNoMapsMs: number[];
  /** Init plus the first invocation (a vend served from the table; the floor's two reads), without source maps. */
  readonly firstNoMapsMs: number[];
  readonly firstMs: number[];
  /** The ten largest contributors to the bundle, KB by package (`(project)` for the vendor's own code). */
  readonly largest: Record<string, number>;
}

/** Bundle bytes by npm package (scoped packages by scope and name), from esbuild's metafile. */
function bytesByPackage(metafile: Metafile): Record<string, number> {
  const bytes = new Map<string, number>();
  for (const output of Object.values(metafile.outputs)) {
    for (const [path, { bytesInOutput }] of Object.entries(output.inputs)) {
      const match = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(path);
      const name = match?.[1] ?? '(project)';
      bytes.set(name, (bytes.get(name) ?? 0) + bytesInOutput);
    }
  }
  return Object.fromEntries(
    [...bytes.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 10)
      .map(([name, size]) => [name, Math.round(size / 1024)]),
  );
}

/** The largest bundle a function may have, and the most its init may take over the floor handler's. */
const BUNDLE_GOAL_KB = 500;
const INIT_GOAL = 1.3;

/**
 * Scenario 5: each function bundled as the CDK construct bundles it (esbuild, ESM, minified, node24, AWS SDK
 * bundled, external source map, the require banner), beside the floor (a handler that builds the DynamoDB and
 * Secrets Manager clients, nothing else; its first call reads an item and a secret) and an empty handler bundled the
 * same way; module initialization timed by importing each bundle in a fresh `node` process, with and without
 * `--enable-source-maps`, and for the client-credentials function and the floor, init plus the first invocation: a
 * vend served from the table (Secrets Manager, DynamoDB and KMS on loopback).
 */
export async function coldStart(options: BenchOptions) {
  return withCleanup(async (defer) => {
    const dir = await mkdtemp(join(tmpdir(), 'token-vendor-bench-'));
    defer(() => rm(dir, { recursive: true, force: true }));
    const emptyEntry = join(dir, 'empty.mjs');
    await writeFile(emptyEntry, "export const handler = async () => ({ statusCode: 200, body: '' });\n");
    const entries = [
      ...FUNCTIONS.map((name) => ({ name, entry: join(ROOT, 'functions', `${name}.ts`) })),
      { name: 'floor handler', entry: join(ROOT, 'bench', 'floor-handler.ts') },
      { name: 'empty handler', entry: emptyEntry },
    ];
    const bundles: { name: string; file: string; packages: Record<string, number> }[] = [];
    for (const { name, entry } of entries) {
      const file = join(dir, name.replace(' ', '-'), 'index.mjs');
      const { metafile } = await build({
        entryPoints: [entry],
        outfile: file,
        bundle: true,
        platform: 'node',
        format: 'esm',
        target: 'node24',
        minify: true,
        sourcemap: true,
        sourcesContent: false,
        mainFields: ['module', 'main'],
        banner: { js: ESM_REQUIRE_SHIM },
        logLevel: 'error',
        metafile: true,
      });
      bundles.push({ name, file, packages: bytesByPackage(metafile) });
    }
    const env = await loopbackAws(defer);
    const measured: Measured[] = [];
    for (const { name, file, packages } of bundles) {
      measured.push({
        name,
        largest: packages,
        kb: (await stat(file)).size / 1024,
        mapKb: (await stat(`${file}.map`)).size / 1024,
        initMs: [],
        initNoMapsMs: [],
        firstMs: [],
        firstNoMapsMs: [],
      });
    }
    const eventOf = (name: string) =>
      name === 'client-credentials' ? VEND_EVENT : name === 'floor handler' ? {} : undefined;
    // Round-robin, so that a busy moment on the machine hits every bundle alike.
    for (let repetition = 0; repetition < options.repetitions; repetition += 1) {
      for (const [index, { name, file }] of bundles.entries()) {
        const entry = measured[index] as Measured;
        const event = eventOf(name);
        const withMaps = await probe(file, true, env, event);
        const withoutMaps = await probe(file, false, env, event);
        entry.initMs.push(withMaps.initMs);
        entry.initNoMapsMs.push(withoutMaps.initMs);
        if (withMaps.firstMs !== null) entry.firstMs.push(withMaps.initMs + withMaps.firstMs);
        if (withoutMaps.firstMs !== null) entry.firstNoMapsMs.push(withoutMaps.initMs + withoutMaps.firstMs);
      }
    }
    const byName = (name: string) => measured.find((entry) => entry.name === name) as Measured;
    const empty = byName('empty handler');
    const floor = byName('floor handler');
    const floorInit = median(floor.initNoMapsMs);
    const floorFirst = median(floor.firstNoMapsMs);
    const scenario = '5 cold start';
    const functions = measured.filter((entry) => entry !== empty && entry !== floor);
    const rows: Row[] = measured.map((entry) => {
      const init = median(entry.initMs);
      const noMaps = median(entry.initNoMapsMs);
      const first =
        entry.firstNoMapsMs.length === 0 ? '' : ` · init + first call ${ms(median(entry.firstNoMapsMs), 0)}`;
      const versusFloor = functions.includes(entry) ? ` = ${ratio(noMaps / floorInit)} floor` : '';
      return {
        scenario,
        metric: `${entry.name}: bundle KB · init without source maps (with) · init + first call`,
        value:
          entry === empty
            ? `${entry.kb.toFixed(1)} KB · ${ms(noMaps)} (${ms(init)})`
            : `${entry.kb.toFixed(0)} KB · ${ms(noMaps, 0)} (${ms(init, 0)})${versusFloor}${first}`,
      };
    });
    const largest = Math.max(...functions.map((entry) => entry.kb));
    const slowest = Math.max(...functions.map((entry) => median(entry.initNoMapsMs)));
    const vend = byName('client-credentials');
    rows.push(
      {
        scenario,
        metric: 'largest function bundle',
        value: `${largest.toFixed(0)} KB (floor ${floor.kb.toFixed(0)} KB)`,
        target: `≤ ${BUNDLE_GOAL_KB} KB`,
        met: largest <= BUNDLE_GOAL_KB,
      },
      {
        scenario,
        metric: 'slowest function init ÷ floor init (without source maps)',
        value: ratio(slowest / floorInit),
        target: `≤ ${INIT_GOAL}×`,
        met: slowest / floorInit <= INIT_GOAL,
      },
      {
        scenario,
        metric: 'client-credentials init + first vend ÷ floor init + first call (without source maps)',
        value: `${ratio(median(vend.firstNoMapsMs) / floorFirst)} (with source maps: ${ms(median(vend.firstMs), 0)})`,
      },
    );
    return {
      rows,
      data: {
        bundling:
          'esbuild: bundle, platform node, format esm, target node24, minify, sourcemap (external, no sources content), mainFields module,main, createRequire banner; @aws-sdk/* bundled (bundleAwsSDK: true, as in infra/)',
        initMeasure:
          "performance.now() around import() in a fresh node process, without and with NODE_OPTIONS=--enable-source-maps; first call: performance.now() around the handler's first invocation in the same process",
        bundles: measured.map((entry) => ({
          name: entry.name,
          kb: entry.kb,
          mapKb: entry.mapKb,
          initMedianMs: median(entry.initMs),
          initNoSourceMapsMedianMs: median(entry.initNoMapsMs),
          initAndFirstCallMedianMs: median(entry.firstMs),
          initAndFirstCallNoSourceMapsMedianMs: median(entry.firstNoMapsMs),
          initMs: entry.initMs,
          initNoSourceMapsMs: entry.initNoMapsMs,
          initAndFirstCallMs: entry.firstMs,
          initAndFirstCallNoSourceMapsMs: entry.firstNoMapsMs,
          largestPackagesKb: entry.largest,
        })),
      },
    };
  });
}
