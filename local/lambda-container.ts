import type { Context } from 'aws-lambda';
import { rotateFunction, tokenFunction } from '../functions/lambda/entry.ts';
import { EncryptionSdkSealer } from '../shared/adapters/encryption-sdk-sealer.ts';
import { isFamily } from '../shared/core/identifiers.ts';
import type { InvokeMessage, InvokeReply } from './lambda-runtime.ts';
import { LOCAL_NETWORK } from './network.ts';
import { LOCAL_KEY_FILE, loadLocalTokenKey } from './token-key.ts';

/**
 * One local Lambda execution environment (started by lambda-runtime.ts): builds the function from its environment at
 * start, as a Lambda container runs the handler module's top level at its cold start, then runs the invocations it
 * is sent, one at a time. It is still local mode: loopback token URLs stay allowed.
 */
type Handler = (event: unknown, context: Context) => Promise<unknown>;

const entry = process.argv[2] ?? '';
const keyFile = process.env[LOCAL_KEY_FILE];
if (keyFile === undefined) throw new Error(`${LOCAL_KEY_FILE} is not set`);
const overrides = { network: LOCAL_NETWORK, sealer: EncryptionSdkSealer.localKey(await loadLocalTokenKey(keyFile)) };
const handler: Handler = isFamily(entry)
  ? (tokenFunction(entry, process.env, overrides) as unknown as Handler)
  : entry === 'rotate'
    ? (rotateFunction(process.env, overrides) as unknown as Handler)
    : (() => {
        throw new Error(`unknown function entry ${entry}`);
      })();

function contextFor(message: InvokeMessage): Context {
  const functionName = process.env.AWS_LAMBDA_FUNCTION_NAME ?? entry;
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:local:000000000000:function:${functionName}`,
    memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE ?? '256',
    awsRequestId: message.requestId,
    logGroupName: `/aws/lambda/${functionName}`,
    logStreamName: 'local',
    getRemainingTimeInMillis: () => Math.max(0, message.deadline - Date.now()),
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}

process.on('message', (message: InvokeMessage) => {
  handler(message.event, contextFor(message)).then(
    (result) => process.send?.({ id: message.id, result } satisfies InvokeReply),
    (error: unknown) =>
      process.send?.({
        id: message.id,
        error: {
          name: error instanceof Error ? error.name : 'Error',
          message: error instanceof Error ? error.message : 'the function failed',
        },
      } satisfies InvokeReply),
  );
});
// Local mode gone (even killed): this environment goes too, as soon as it runs again.
process.on('disconnect', () => process.exit(0));
process.send?.('ready');
