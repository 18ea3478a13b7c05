import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RecordedRequest {
  readonly method: string;
  readonly headers: IncomingHttpHeaders;
  readonly form: URLSearchParams;
}

export interface ScriptedAnswer {
  readonly status?: number;
  readonly headers?: Record<string, string>;
  /** A string is sent as is; anything else as JSON. */
  readonly body?: unknown;
  /** Drop the connection without an answer (a reset). */
  readonly reset?: boolean;
  /** Never answer. */
  readonly hang?: boolean;
}

export type Script = (request: RecordedRequest, index: number) => ScriptedAnswer | Promise<ScriptedAnswer>;

export interface ScriptedServer {
  readonly url: string;
  readonly requests: RecordedRequest[];
  setScript(script: Script): void;
  close(): Promise<void>;
}

/**
 * A token endpoint on loopback whose answers a test writes: for behaviours no real server shows on demand
 * (sloppy answers, a server that wants credentials in headers, one that refuses Basic), recording every request.
 */
export async function startScriptedServer(initial: Script): Promise<ScriptedServer> {
  let script = initial;
  const requests: RecordedRequest[] = [];
  const server: Server = createServer((incoming, outgoing) => {
    const chunks: Buffer[] = [];
    incoming.on('data', (chunk: Buffer) => chunks.push(chunk));
    incoming.on('end', () => {
      const recorded = {
        method: incoming.method ?? '',
        headers: incoming.headers,
        form: new URLSearchParams(Buffer.concat(chunks).toString('utf8')),
      };
      requests.push(recorded);
      Promise.resolve(script(recorded, requests.length - 1)).then((answer) => {
        if (answer.hang === true) return;
        if (answer.reset === true) {
          incoming.socket.destroy();
          return;
        }
        const body = typeof answer.body === 'string' ? answer.body : JSON.stringify(answer.body ?? {});
        const type = typeof answer.body === 'string' ? 'text/html' : 'application/json';
        outgoing.writeHead(answer.status ?? 200, { 'content-type': type, ...answer.headers });
        outgoing.end(body);
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/token`,
    requests,
    setScript: (next) => {
      script = next;
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

let counter = 0;
/** A plausible successful token answer with a unique access token. */
export function tokenAnswer(extra: Record<string, unknown> = {}): ScriptedAnswer {
  counter += 1;
  return { body: { access_token: `scripted-access-${counter}`, token_type: 'Bearer', expires_in: 3600, ...extra } };
}
