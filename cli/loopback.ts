import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CommandError, UsageError } from './commands.ts';

/** Where the browser is sent back to, and where the CLI listens for it. */
export interface RedirectPlan {
  /** The redirect URI as sent, without a port when the port is chosen at listen time (`{port}` is filled in then). */
  readonly uri: URL;
  /** Whether the URI takes the port the listener got (a loopback URI without a port of its own). */
  readonly portFromListener: boolean;
  readonly hosts: readonly string[];
  /** 0: any free port. */
  readonly port: number;
  readonly path: string;
}

const LOOPBACK_HOSTS: Readonly<Record<string, readonly string[]>> = {
  '127.0.0.1': ['127.0.0.1'],
  '[::1]': ['::1'],
  // A browser may try either address for localhost.
  localhost: ['127.0.0.1', '::1'],
};

/**
 * The listener from `--port` and `--redirect-uri` (RFC 8252 §7.3): by default `http://127.0.0.1:<port>/callback`
 * on a free port. A loopback `--redirect-uri` is listened on as written; any other one (a tunnel or proxy in front)
 * needs `--port`, the local port its traffic arrives on.
 */
export function planRedirect(redirectUri: string | undefined, portText: string | undefined): RedirectPlan {
  let port = 0;
  if (portText !== undefined) {
    if (!/^\d{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65_535) {
      throw new UsageError('--port must be a port number (1-65535)');
    }
    port = Number(portText);
  }
  if (redirectUri === undefined) {
    const uri = new URL('http://127.0.0.1/callback');
    return { uri, portFromListener: true, hosts: ['127.0.0.1'], port, path: uri.pathname };
  }
  if (!URL.canParse(redirectUri)) throw new UsageError(`--redirect-uri must be an absolute URL, got "${redirectUri}"`);
  const uri = new URL(redirectUri);
  if (uri.hash !== '') throw new UsageError('--redirect-uri must not have a fragment (RFC 6749 §3.1.2)');
  const loopback = uri.protocol === 'http:' ? LOOPBACK_HOSTS[uri.hostname] : undefined;
  if (loopback === undefined) {
    if (uri.protocol !== 'https:' && uri.protocol !== 'http:') throw new UsageError('--redirect-uri must be http(s)');
    if (port === 0) {
      throw new UsageError('--redirect-uri not on a loopback host needs --port: the local port its traffic reaches');
    }
    return { uri, portFromListener: false, hosts: ['127.0.0.1'], port, path: uri.pathname };
  }
  if (uri.port !== '') {
    if (port !== 0 && port !== Number(uri.port)) throw new UsageError('--port and the port of --redirect-uri differ');
    port = Number(uri.port);
  }
  return { uri, portFromListener: uri.port === '', hosts: loopback, port, path: uri.pathname };
}

/** The one request that came back to the redirect URI, answered once the flow knows its outcome. */
export interface Redirected {
  readonly query: URLSearchParams;
  respond(status: number, page: string): Promise<void>;
}

export interface Listener {
  /** The redirect URI to send, with the port the listener got. */
  readonly redirectUri: string;
  /** The first request to the redirect path; rejects after `timeoutMs`. */
  redirected(timeoutMs: number): Promise<Redirected>;
  close(): Promise<void>;
}

/** A page for the browser: the texts are the CLI's own, never anything from the request. */
export const page = (title: string, text: string): string =>
  `<!doctype html><html><head><meta charset="utf-8"><title>${title}</title></head>` +
  `<body style="font-family:sans-serif;margin:3em"><h1>${title}</h1><p>${text}</p></body></html>`;

function reply(response: ServerResponse, status: number, body: string): Promise<void> {
  response.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    // The address bar holds the code: no page loaded from here may send it on.
    'referrer-policy': 'no-referrer',
    connection: 'close',
  });
  return new Promise((resolve) => response.end(body, () => resolve()));
}

async function listenOn(server: Server, host: string, port: number): Promise<void> {
  server.listen(port, host);
  await Promise.race([once(server, 'listening'), once(server, 'error').then(([error]) => Promise.reject(error))]);
}

/**
 * Listens for the browser's return. Port in use and similar failures are the operator's to fix, named as such.
 * Requests to other paths get 404 (a browser asks for /favicon.ico); only the first request to the redirect path is
 * taken, later ones get 409.
 */
export async function listen(plan: RedirectPlan): Promise<Listener> {
  let resolveRedirect: (redirected: Redirected) => void = () => undefined;
  const arrived = new Promise<Redirected>((resolve) => {
    resolveRedirect = resolve;
  });
  let taken = false;
  const handle = (request: IncomingMessage, response: ServerResponse) => {
    const url = new URL(request.url ?? '/', 'http://127.0.0.1');
    if (request.method !== 'GET' || url.pathname !== plan.path) {
      void reply(response, 404, page('Not found', 'This is token-vendor connect, waiting for the authorization.'));
      return;
    }
    if (taken) {
      void reply(response, 409, page('Already answered', 'token-vendor connect already took an answer.'));
      return;
    }
    taken = true;
    resolveRedirect({ query: url.searchParams, respond: (status, body) => reply(response, status, body) });
  };

  const servers: Server[] = [];
  let port = plan.port;
  for (const [index, host] of plan.hosts.entries()) {
    const server = createServer(handle);
    try {
      await listenOn(server, host, port);
    } catch (error) {
      // The second address of localhost is a courtesy: a machine without IPv6 still works on the first.
      if (index > 0) continue;
      await Promise.all(servers.map(closeServer));
      const code = (error as NodeJS.ErrnoException).code ?? 'failed';
      const where = `${host.includes(':') ? `[${host}]` : host}:${port === 0 ? '<any>' : port}`;
      throw new CommandError(
        code === 'EADDRINUSE'
          ? `cannot listen on ${where}: the port is in use. Stop what uses it, or choose another with --port ` +
              '(the redirect URI registered with the provider must allow it)'
          : `cannot listen on ${where} (${code})`,
        { cause: error },
      );
    }
    servers.push(server);
    port = (server.address() as AddressInfo).port;
  }

  const uri = new URL(plan.uri);
  if (plan.portFromListener) uri.port = String(port);
  let timer: NodeJS.Timeout | undefined;
  return {
    redirectUri: uri.toString(),
    redirected: (timeoutMs) =>
      Promise.race([
        arrived,
        new Promise<never>((_resolve, reject) => {
          timer = setTimeout(() => reject(new RedirectTimeout(timeoutMs)), timeoutMs);
        }),
      ]).finally(() => clearTimeout(timer)),
    close: async () => {
      clearTimeout(timer);
      await Promise.all(servers.map(closeServer));
    },
  };
}

export class RedirectTimeout extends Error {
  readonly timeoutMs: number;
  constructor(timeoutMs: number) {
    super(`no redirect within ${timeoutMs} ms`);
    this.timeoutMs = timeoutMs;
    this.name = 'RedirectTimeout';
  }
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    // Answers are sent with `connection: close`; anything still open (a browser's spare connection) goes now.
    server.closeAllConnections();
  });
}
