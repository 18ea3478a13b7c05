import { type ChildProcess, fork } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { resolve } from 'node:path';
import { listen } from './api-gateway.ts';

/** What a container runs: a handler module's factory name and the function's timeout. */
export interface FunctionSpec {
  /** The function's name (`AWS_LAMBDA_FUNCTION_NAME`), also its name in the Invoke API. */
  readonly name: string;
  /** A family (`client-credentials`, `jwt-bearer`, …) or `rotate`: what local/lambda-container.ts builds. */
  readonly entry: string;
  readonly timeoutMs: number;
}

/** A message to a container: run one invocation. */
export interface InvokeMessage {
  readonly id: string;
  readonly event: unknown;
  /** Epoch milliseconds when the invocation times out (what `getRemainingTimeInMillis()` counts down to). */
  readonly deadline: number;
  readonly requestId: string;
}

/** A container's answer to one invocation. */
export type InvokeReply =
  | { readonly id: string; readonly result: unknown }
  | { readonly id: string; readonly error: { readonly name: string; readonly message: string } };

const CONTAINER = resolve(import.meta.dirname, 'lambda-container.ts');

/** However local mode ends, no frozen container outlives it. */
const LIVE_CONTAINERS = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of LIVE_CONTAINERS) child.kill('SIGKILL');
});

/**
 * One Lambda execution environment: a child process that runs one invocation at a time and is frozen (SIGSTOP)
 * from the moment it answers until its next invocation, as Lambda freezes a container between invocations. Work a
 * function left running after its response does not progress until then, so nothing can rely on it.
 */
class Container {
  readonly #child: ChildProcess;
  readonly #ready: Promise<void>;
  #pending: { id: string; settle: (reply: InvokeReply) => void } | undefined;
  #frozen = false;
  busy = false;
  dead = false;

  constructor(spec: FunctionSpec, env: NodeJS.ProcessEnv) {
    const child = fork(CONTAINER, [spec.entry], {
      env: { ...env, AWS_LAMBDA_FUNCTION_NAME: spec.name, AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '256' },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      execArgv: [],
    });
    this.#child = child;
    LIVE_CONTAINERS.add(child);
    child.once('exit', () => LIVE_CONTAINERS.delete(child));
    this.#ready = new Promise((ready, fail) => {
      const onMessage = (message: unknown) => {
        if (message === 'ready') {
          this.#child.off('message', onMessage);
          ready();
        }
      };
      this.#child.on('message', onMessage);
      this.#child.once('exit', (code) => fail(new Error(`container ${spec.name} exited with ${String(code)}`)));
    });
    this.#ready.catch(() => undefined);
    this.#child.on('message', (message: unknown) => {
      const reply = message as InvokeReply;
      if (this.#pending === undefined || typeof reply !== 'object' || reply === null || reply.id !== this.#pending.id) {
        return;
      }
      const { settle } = this.#pending;
      this.#pending = undefined;
      this.#freeze();
      settle(reply);
    });
    this.#child.once('exit', () => {
      this.dead = true;
      this.#pending?.settle({
        id: this.#pending.id,
        error: { name: 'Runtime.ExitError', message: 'container exited' },
      });
      this.#pending = undefined;
    });
  }

  async invoke(event: unknown, spec: FunctionSpec): Promise<InvokeReply> {
    await this.#ready;
    this.#thaw();
    const id = randomUUID();
    const deadline = Date.now() + spec.timeoutMs;
    const reply = new Promise<InvokeReply>((settle) => {
      this.#pending = { id, settle };
    });
    const timer = setTimeout(() => {
      // Lambda ends an invocation at its timeout: whatever it was doing is gone with the environment.
      this.#pending?.settle({ id, error: { name: 'Sandbox.Timedout', message: 'Task timed out' } });
      this.#pending = undefined;
      this.kill();
    }, spec.timeoutMs);
    const message: InvokeMessage = { id, event, deadline, requestId: randomUUID() };
    this.#child.send(message);
    return reply.finally(() => clearTimeout(timer));
  }

  #freeze(): void {
    if (this.dead || this.#frozen) return;
    this.#frozen = this.#child.kill('SIGSTOP');
  }

  #thaw(): void {
    if (!this.#frozen) return;
    this.#child.kill('SIGCONT');
    this.#frozen = false;
  }

  kill(): void {
    if (this.dead) return;
    this.dead = true;
    this.#child.kill('SIGKILL');
  }
}

/**
 * The containers of one function: an invocation takes an idle one, or starts a new one when all are busy (a cold
 * start), up to `maxContainers`; beyond that it waits for one to be free, as Lambda throttles at its concurrency.
 */
export class FunctionPool {
  readonly #spec: FunctionSpec;
  readonly #env: NodeJS.ProcessEnv;
  readonly #maxContainers: number;
  readonly #containers: Container[] = [];
  readonly #waiting: (() => void)[] = [];

  constructor(spec: FunctionSpec, env: NodeJS.ProcessEnv, maxContainers = 8) {
    this.#spec = spec;
    this.#env = env;
    this.#maxContainers = maxContainers;
  }

  /** Starts one container ahead of the first invocation, so the first caller does not pay the cold start. */
  warm(): void {
    if (this.#containers.length === 0) this.#containers.push(new Container(this.#spec, this.#env));
  }

  async invoke(event: unknown): Promise<unknown> {
    const container = await this.#take();
    try {
      const reply = await container.invoke(event, this.#spec);
      if ('error' in reply) throw Object.assign(new Error(reply.error.message), { name: reply.error.name });
      return reply.result;
    } finally {
      container.busy = false;
      this.#waiting.shift()?.();
    }
  }

  async #take(): Promise<Container> {
    for (;;) {
      for (let index = this.#containers.length - 1; index >= 0; index -= 1) {
        if (this.#containers[index]?.dead === true) this.#containers.splice(index, 1);
      }
      const idle = this.#containers.find((container) => !container.busy);
      const container =
        idle ?? (this.#containers.length < this.#maxContainers ? new Container(this.#spec, this.#env) : undefined);
      if (container !== undefined) {
        if (idle === undefined) this.#containers.push(container);
        container.busy = true;
        return container;
      }
      await new Promise<void>((free) => this.#waiting.push(free));
    }
  }

  close(): void {
    for (const container of this.#containers) container.kill();
    this.#containers.length = 0;
  }
}

/**
 * The part of the Lambda Invoke API (`POST /2015-03-31/functions/{name}/invocations`) the functions use, on loopback:
 * `X-Amz-Invocation-Type: Event` is queued and answered 202 at once, as Lambda does; `RequestResponse` answers with
 * the function's result. Functions reach it through the AWS SDK's own `AWS_ENDPOINT_URL_LAMBDA`.
 */
export async function startInvokeApi(
  pools: ReadonlyMap<string, FunctionPool>,
  onAsyncError: (name: string, error: unknown) => void,
): Promise<{ readonly endpoint: string; close(): Promise<void> }> {
  const route = /^\/2015-03-31\/functions\/([^/]+)\/invocations$/;
  const server: Server = createServer((request: IncomingMessage, response: ServerResponse) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const name = decodeURIComponent(route.exec(request.url ?? '')?.[1] ?? '');
      const pool = pools.get(name.split(':').pop() ?? name);
      const answer = (status: number, body: unknown, headers: Record<string, string> = {}) => {
        response.writeHead(status, { 'content-type': 'application/json', ...headers });
        response.end(body === undefined ? '' : JSON.stringify(body));
      };
      if (request.method !== 'POST' || pool === undefined) {
        return answer(
          404,
          { Type: 'User', message: `Function not found: ${name}` },
          {
            'x-amzn-errortype': 'ResourceNotFoundException',
          },
        );
      }
      let event: unknown;
      try {
        const text = Buffer.concat(chunks).toString('utf8');
        event = text === '' ? {} : JSON.parse(text);
      } catch {
        return answer(
          400,
          { Type: 'User', message: 'Could not parse request body into json' },
          {
            'x-amzn-errortype': 'InvalidRequestContentException',
          },
        );
      }
      if (request.headers['x-amz-invocation-type'] === 'Event') {
        pool.invoke(event).catch((error: unknown) => onAsyncError(name, error));
        return answer(202, undefined);
      }
      pool.invoke(event).then(
        (result) => answer(200, result),
        (error: unknown) =>
          answer(
            200,
            { errorType: error instanceof Error ? error.name : 'Error', errorMessage: String(error) },
            {
              'x-amz-function-error': 'Unhandled',
            },
          ),
      );
    });
  });
  const port = await listen(server, 0);
  return {
    endpoint: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise((done) => {
        server.closeAllConnections();
        server.close(() => done());
      }),
  };
}
