/**
 * A stand-in for Lambda's Node.js runtime, one execution environment per process, started by
 * test/support/artifacts.ts with the function's environment and `LAMBDA_TASK_ROOT` (also its working directory)
 * holding the bundle `cdk synth` wrote.
 *
 * - argv[2]: JSON {@link BootstrapOptions}.
 * - stdin: a JSON array of events, invoked one after the other in this one environment (a cold start, then warm
 *   invocations).
 * - stdout: whatever the function writes, and one line per step starting with `options.marker` followed by a JSON
 *   {@link BootstrapRecord}. The process exits once the last event is answered, as a container is frozen then.
 *
 * Like Lambda's runtime it imports `<module>` of the `Handler` setting (`index.handler`: `index.mjs`, `.js` or `.cjs`)
 * and calls the named export with the event and a context object.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

export interface BootstrapOptions {
  /** The function's `Handler` setting, `<module>.<export>`. */
  readonly handler: string;
  /** The function's `Timeout` in milliseconds: what `getRemainingTimeInMillis()` counts down from. */
  readonly timeoutMs: number;
  readonly functionArn: string;
  /** Prefix of the lines that carry the bootstrap's own records. */
  readonly marker: string;
}

/** What Lambda reports of a failed init or invocation (`errorType`, `errorMessage`, `stackTrace`). */
export interface LambdaError {
  readonly errorType: string;
  readonly errorMessage: string;
  readonly stackTrace: readonly string[];
}

export type BootstrapRecord =
  | { readonly type: 'init'; readonly nodeVersion: string; readonly initMs: number }
  | { readonly type: 'init-error'; readonly error: LambdaError }
  | { readonly type: 'invocation'; readonly requestId: string; readonly result: unknown }
  | { readonly type: 'invocation-error'; readonly requestId: string; readonly error: LambdaError };

type Handler = (event: unknown, context: unknown) => Promise<unknown>;

const options = JSON.parse(process.argv[2] ?? '{}') as BootstrapOptions;
const report = (record: BootstrapRecord) => {
  // stdout to a pipe is synchronous on Linux: the line is out before the process exits.
  process.stdout.write(`${options.marker}${JSON.stringify(record)}\n`);
};
const lambdaError = (error: unknown, fallbackType: string): LambdaError => ({
  errorType: error instanceof Error ? error.name : fallbackType,
  errorMessage: error instanceof Error ? error.message : String(error),
  stackTrace: error instanceof Error ? (error.stack ?? '').split('\n').slice(1) : [],
});

async function loadHandler(): Promise<Handler> {
  const taskRoot = process.env.LAMBDA_TASK_ROOT ?? process.cwd();
  const separator = options.handler.lastIndexOf('.');
  const moduleName = options.handler.slice(0, separator);
  const exportName = options.handler.slice(separator + 1);
  const file = ['.mjs', '.js', '.cjs'].map((extension) => join(taskRoot, `${moduleName}${extension}`)).find(existsSync);
  if (file === undefined) {
    throw Object.assign(new Error(`Cannot find module '${moduleName}'`), { name: 'Runtime.ImportModuleError' });
  }
  const module = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  const handler = module[exportName];
  if (typeof handler !== 'function') {
    throw Object.assign(new Error(`${options.handler} is undefined or not exported`), {
      name: 'Runtime.HandlerNotFound',
    });
  }
  return handler as Handler;
}

async function readEvents(): Promise<unknown[]> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown[];
}

function contextFor(requestId: string, deadline: number) {
  const functionName = process.env.AWS_LAMBDA_FUNCTION_NAME ?? '';
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName,
    functionVersion: process.env.AWS_LAMBDA_FUNCTION_VERSION ?? '$LATEST',
    invokedFunctionArn: options.functionArn,
    memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE ?? '128',
    awsRequestId: requestId,
    logGroupName: process.env.AWS_LAMBDA_LOG_GROUP_NAME ?? `/aws/lambda/${functionName}`,
    logStreamName: process.env.AWS_LAMBDA_LOG_STREAM_NAME ?? '',
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}

const initStarted = performance.now();
let handler: Handler;
try {
  handler = await loadHandler();
} catch (error) {
  report({ type: 'init-error', error: lambdaError(error, 'Runtime.ImportModuleError') });
  process.exit(1);
}
report({ type: 'init', nodeVersion: process.version, initMs: Math.round(performance.now() - initStarted) });

for (const event of await readEvents()) {
  const requestId = randomUUID();
  // Lambda sets the trace header of each invocation in the environment.
  const epoch = Math.floor(Date.now() / 1000).toString(16);
  process.env._X_AMZN_TRACE_ID = `Root=1-${epoch}-${randomBytes(12).toString('hex')};Sampled=0`;
  try {
    const result = await handler(event, contextFor(requestId, Date.now() + options.timeoutMs));
    report({ type: 'invocation', requestId, result: result ?? null });
  } catch (error) {
    report({ type: 'invocation-error', requestId, error: lambdaError(error, 'Error') });
  }
}
process.exit(0);
