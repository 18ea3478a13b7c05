import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import OAuth2Server, {
  type Client,
  type Falsey,
  type RefreshToken,
  Request,
  Response,
  type Token,
  type User,
} from '@node-oauth/oauth2-server';
import { listen } from './api-gateway.ts';

export interface DemoClient {
  readonly id: string;
  readonly secret: string;
  readonly grants: readonly ('client_credentials' | 'password' | 'refresh_token')[];
}

export interface DemoAuthServerOptions {
  readonly clients: readonly DemoClient[];
  readonly users?: Readonly<Record<string, string>>;
  /** Access token lifetime in seconds. @default 3600 */
  readonly accessTokenLifetime?: number;
  /** 0 picks a free port. */
  readonly port?: number;
  /**
   * Seconds a used refresh token keeps working after rotation, as Okta and Auth0 allow; 0 (the default) makes
   * every refresh token single-use.
   */
  readonly refreshTokenReuseGraceSeconds?: number;
  /** Milliseconds to wait before answering, to model a slow server. */
  readonly delayMs?: number;
}

export interface DemoAuthServer {
  readonly tokenUrl: string;
  /** Token requests answered so far, successful or not. */
  tokenRequests(): number;
  /** Refresh tokens presented after they were used up (outside any grace period). */
  rejectedReuses(): number;
  /** Issues a refresh token for a client and user, as an authorization flow would have. */
  issueRefreshToken(clientId: string, username: string): string;
  close(): Promise<void>;
}

const random = () => randomBytes(24).toString('base64url');

/**
 * A small, real OAuth 2.0 authorization server (`@node-oauth/oauth2-server`) on loopback: local mode's demo and
 * the test suite's password-grant server. Refresh tokens rotate: each use revokes the old one.
 */
export async function startDemoAuthServer(options: DemoAuthServerOptions): Promise<DemoAuthServer> {
  const accessTokens = new Map<string, Token>();
  const refreshTokens = new Map<string, RefreshToken>();
  /** When each rotated-away refresh token was used, for the grace period. */
  const usedAt = new Map<string, number>();
  const graceMs = (options.refreshTokenReuseGraceSeconds ?? 0) * 1000;
  let rejectedReuses = 0;
  const clients = new Map(options.clients.map((client) => [client.id, client]));
  const users = options.users ?? {};
  const toClient = (client: DemoClient): Client => ({ id: client.id, grants: [...client.grants] });

  const model = {
    async getClient(clientId: string, clientSecret: string | null): Promise<Client | Falsey> {
      const client = clients.get(clientId);
      if (client === undefined || (clientSecret !== null && clientSecret !== client.secret)) return false;
      return toClient(client);
    },
    async getUserFromClient(client: Client): Promise<User> {
      return { id: `client:${client.id}` };
    },
    async getUser(username: string, password: string): Promise<User | Falsey> {
      return users[username] !== undefined && users[username] === password ? { id: username } : false;
    },
    async validateScope(_user: User, _client: Client, scope?: string[]): Promise<string[] | Falsey> {
      return scope ?? [];
    },
    async saveToken(token: Token, client: Client, user: User): Promise<Token> {
      const saved = { ...token, client, user };
      accessTokens.set(token.accessToken, saved);
      if (token.refreshToken !== undefined) {
        refreshTokens.set(token.refreshToken, { ...saved, refreshToken: token.refreshToken } as RefreshToken);
      }
      return saved;
    },
    async getAccessToken(accessToken: string): Promise<Token | Falsey> {
      return accessTokens.get(accessToken) ?? false;
    },
    async getRefreshToken(refreshToken: string): Promise<RefreshToken | Falsey> {
      const used = usedAt.get(refreshToken);
      if (used !== undefined && Date.now() - used > graceMs) {
        rejectedReuses += 1;
        return false;
      }
      return refreshTokens.get(refreshToken) ?? false;
    },
    async revokeToken(token: RefreshToken): Promise<boolean> {
      if (graceMs === 0) return refreshTokens.delete(token.refreshToken);
      if (!usedAt.has(token.refreshToken)) usedAt.set(token.refreshToken, Date.now());
      return true;
    },
  };

  const oauth = new OAuth2Server({
    model,
    accessTokenLifetime: options.accessTokenLifetime ?? 3600,
    requireClientAuthentication: { password: true, refresh_token: true, client_credentials: true },
  });

  let requests = 0;
  const server: Server = createServer((incoming, outgoing) => {
    requests += 1;
    handleToken(oauth, incoming, options.delayMs ?? 0)
      .then(({ status, headers, body }) => {
        outgoing.writeHead(status, { ...headers, 'content-type': 'application/json', 'cache-control': 'no-store' });
        outgoing.end(JSON.stringify(body));
      })
      .catch(() => {
        outgoing.writeHead(500, { 'content-type': 'application/json' });
        outgoing.end(JSON.stringify({ error: 'server_error' }));
      });
  });
  const port = await listen(server, options.port ?? 0);

  return {
    tokenUrl: `http://127.0.0.1:${port}/oauth/token`,
    tokenRequests: () => requests,
    rejectedReuses: () => rejectedReuses,
    issueRefreshToken(clientId, username) {
      const client = clients.get(clientId);
      if (client === undefined) throw new Error(`unknown demo client ${clientId}`);
      const refreshToken = random();
      refreshTokens.set(refreshToken, {
        refreshToken,
        refreshTokenExpiresAt: new Date(Date.now() + 30 * 24 * 3600 * 1000),
        scope: [],
        client: toClient(client),
        user: { id: username },
      });
      return refreshToken;
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * oauth2-server reads HTTP Basic credentials without form-urldecoding them; RFC 6749 §2.3.1 says each part is
 * form-urlencoded first, so the header is decoded here before the library sees it.
 */
function decodeBasicCredentials(header: string | undefined): string | undefined {
  const match = header === undefined ? null : /^Basic ([A-Za-z0-9+/=]+)$/i.exec(header);
  if (match === null) return header;
  const decoded = Buffer.from(match[1] ?? '', 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon === -1) return header;
  const form = (part: string) => decodeURIComponent(part.replaceAll('+', ' '));
  try {
    const pair = `${form(decoded.slice(0, colon))}:${form(decoded.slice(colon + 1))}`;
    return `Basic ${Buffer.from(pair, 'utf8').toString('base64')}`;
  } catch {
    return header;
  }
}

async function handleToken(oauth: OAuth2Server, incoming: IncomingMessage, delayMs: number) {
  const chunks: Buffer[] = [];
  for await (const chunk of incoming) chunks.push(chunk as Buffer);
  if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
  const body = Object.fromEntries(new URLSearchParams(Buffer.concat(chunks).toString('utf8')));
  const headers = { ...incoming.headers } as Record<string, string>;
  const authorization = decodeBasicCredentials(headers.authorization);
  if (authorization !== undefined) headers.authorization = authorization;
  const request = new Request({ method: incoming.method ?? 'POST', headers, query: {}, body });
  const response = new Response();
  try {
    await oauth.token(request, response);
  } catch {
    // The library has already written the OAuth error into the response.
  }
  return { status: response.status ?? 500, headers: response.headers ?? {}, body: response.body ?? {} };
}
