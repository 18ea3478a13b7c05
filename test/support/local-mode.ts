import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { Sha256 } from '@aws-crypto/sha256-js';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import { startEmbeddedDynamoDB } from '../../local/dynamodb.ts';

const ROOT = resolve(import.meta.dirname, '..', '..');
// Node 24 runs the TypeScript sources directly (type stripping), exactly as `npm start` does.
const NODE = resolve(ROOT, 'node_modules', '.bin', 'node');

export interface LocalMode {
  readonly url: string;
  readonly child: ChildProcess;
  /** Everything the process printed so far. */
  output(): string;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/**
 * Starts `local/main.ts` (what `npm start` runs) as a child process on a free port and resolves once it prints
 * its listening line; every test stops what it starts.
 */
export async function startLocalMode(env: Record<string, string>, cwd = ROOT): Promise<LocalMode> {
  // Each process's embedded DynamoDB keeps its data in a folder of its own unless the test shares one.
  const stateDir = env.TOKEN_VENDOR_STATE_DIR ?? (await mkdtemp(join(tmpdir(), 'token-vendor-state-')));
  const child = spawn(NODE, [resolve(ROOT, 'local', 'main.ts')], {
    cwd,
    env: {
      ...process.env,
      PORT: '0',
      TOKEN_VENDOR_ROTATE_INTERVAL_SECONDS: '0',
      TOKEN_VENDOR_STATE_DIR: stateDir,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const url = await new Promise<string>((resolveUrl, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk.toString('utf8');
      const match = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(output);
      if (match?.[1] !== undefined) resolveUrl(match[1]);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) =>
      reject(new Error(`local mode exited with ${String(code)} before listening:\n${output}`)),
    );
  });
  return {
    url,
    child,
    output: () => output,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = once(child, 'exit');
        child.kill(signal);
        await exited;
      }
      if (env.TOKEN_VENDOR_STATE_DIR === undefined) await rm(stateDir, { recursive: true, force: true });
    },
  };
}

export interface SigningIdentity {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly region?: string;
}

/** Sends a SigV4-signed request (service execute-api), as a workload's AWS SDK would. */
export async function signedFetch(
  url: string,
  identity: SigningIdentity,
  options: { method?: 'GET' | 'POST'; signingDate?: Date; service?: string } = {},
): Promise<Response> {
  const target = new URL(url);
  const query: Record<string, string> = {};
  for (const [name, value] of target.searchParams) query[name] = value;
  const signer = new SignatureV4({
    credentials: { accessKeyId: identity.accessKeyId, secretAccessKey: identity.secretAccessKey },
    region: identity.region ?? 'us-east-1',
    service: options.service ?? 'execute-api',
    sha256: Sha256,
  });
  const signed = await signer.sign(
    new HttpRequest({
      method: options.method ?? 'GET',
      protocol: target.protocol,
      hostname: target.hostname,
      port: Number(target.port),
      path: target.pathname,
      query,
      headers: { host: target.host },
    }),
    options.signingDate === undefined ? {} : { signingDate: options.signingDate },
  );
  const search = new URLSearchParams(query).toString().replaceAll('+', '%20');
  return fetch(`${target.origin}${target.pathname}${search === '' ? '' : `?${search}`}`, {
    method: options.method ?? 'GET',
    headers: signed.headers,
  });
}

/**
 * Local-mode processes started at once: each one that started joins `started` (which the test stops), even when
 * another failed to start, whose error is then thrown. Resolves with them in the order given.
 */
export async function startEach(starts: readonly Promise<LocalMode>[], started: LocalMode[]): Promise<LocalMode[]> {
  const settled = await Promise.allSettled(starts);
  const running = settled.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
  started.push(...running);
  for (const result of settled) if (result.status === 'rejected') throw result.reason;
  return running;
}

export interface LocalFixture {
  readonly dir: string;
  readonly connectorsDir: string;
  /** The environment that points a local-mode process at this fixture (and at `dynamoEndpoint`, if given). */
  readonly env: Record<string, string>;
  cleanup(): Promise<void>;
}

/**
 * A folder with connector documents (`{ 'client-credentials/crm': {…} }`) and a principals file, ready for one
 * or several local-mode processes.
 */
export async function prepareLocalFixture(
  connectors: Record<string, object>,
  principals: Record<string, { accessKeyId: string; secretAccessKey: string; arn: string }>,
  dynamoEndpoint?: string,
): Promise<LocalFixture> {
  const dir = await mkdtemp(join(tmpdir(), 'token-vendor-local-'));
  const connectorsDir = join(dir, 'connectors');
  for (const [path, document] of Object.entries(connectors)) {
    await mkdir(dirname(join(connectorsDir, path)), { recursive: true });
    await writeFile(join(connectorsDir, `${path}.json`), JSON.stringify(document, null, 2));
  }
  const principalsFile = join(dir, 'principals.json');
  await writeFile(
    principalsFile,
    JSON.stringify(
      Object.fromEntries(Object.values(principals).map((principal) => [principal.accessKeyId, principal])),
    ),
  );
  return {
    dir,
    connectorsDir,
    env: {
      TOKEN_VENDOR_CONNECTORS_DIR: connectorsDir,
      TOKEN_VENDOR_LOCAL_PRINCIPALS: principalsFile,
      // Processes that share a DynamoDB share the key its token values are sealed with (in the state folder).
      ...(dynamoEndpoint === undefined
        ? {}
        : {
            AWS_ENDPOINT_URL_DYNAMODB: dynamoEndpoint,
            AWS_ACCESS_KEY_ID: 'local',
            AWS_SECRET_ACCESS_KEY: 'local',
            TOKEN_VENDOR_STATE_DIR: join(dir, 'state'),
          }),
    },
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}

export interface LocalCluster {
  readonly fixture: LocalFixture;
  /** Processes started so far, each one "container" sharing the DynamoDB and the connectors folder. */
  readonly processes: LocalMode[];
  /** Starts one more process, with extra settings. */
  start(env?: Record<string, string>): Promise<LocalMode>;
  /** Stops every process it started, then DynamoDB, then removes the folder. */
  close(): Promise<void>;
}

/**
 * Several local-mode processes on one embedded DynamoDB (`AWS_ENDPOINT_URL_DYNAMODB`) and one connectors folder:
 * how the tests model several Lambda containers.
 */
export async function startLocalCluster(
  connectors: Record<string, object>,
  principals: Record<string, { accessKeyId: string; secretAccessKey: string; arn: string }>,
  options: { processes?: number; env?: Record<string, string> } = {},
): Promise<LocalCluster> {
  const dynamo = await startEmbeddedDynamoDB();
  const fixture = await prepareLocalFixture(connectors, principals, dynamo.endpoint);
  const processes: LocalMode[] = [];
  const start = async (env: Record<string, string> = {}) => {
    const started = await startLocalMode({ ...fixture.env, ...options.env, ...env });
    processes.push(started);
    return started;
  };
  await Promise.all(Array.from({ length: options.processes ?? 0 }, () => start()));
  return {
    fixture,
    processes,
    start,
    async close() {
      await Promise.all(processes.map((process) => process.stop()));
      await dynamo.close();
      await fixture.cleanup();
    },
  };
}

/**
 * Resolves once `condition` holds, checking every 20 ms; rejects after `withinMs`. For what a test can only observe
 * from outside (a process's output, a server's counters), never as a fixed sleep.
 */
export async function eventually(condition: () => boolean, withinMs: number): Promise<void> {
  const until = Date.now() + withinMs;
  while (!condition()) {
    if (Date.now() > until) throw new Error(`not within ${withinMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
