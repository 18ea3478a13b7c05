import { type KeyObject, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import OAuth2Server, {
  AbstractGrantType,
  type Client,
  type Falsey,
  InvalidGrantError,
  InvalidRequestError,
  type RefreshToken,
  Request,
  Response,
  type Token,
  type User,
} from '@node-oauth/oauth2-server';
import { decodeJwt, type JWTPayload, jwtVerify } from 'jose';
import { JWT_BEARER_GRANT_TYPE } from '../shared/core/identifiers.ts';
import { listen } from './api-gateway.ts';

export interface DemoClient {
  readonly id: string;
  /** Absent: the client needs no secret for the JWT bearer grant (its assertion identifies it). */
  readonly secret?: string;
  readonly grants: readonly ('client_credentials' | 'password' | 'refresh_token' | typeof JWT_BEARER_GRANT_TYPE)[];
}

/** Who may sign JWT bearer assertions, and the public key that verifies them. */
export interface DemoAssertionIssuer {
  /** The client an assertion of this issuer is granted to (Salesforce: the connected app's consumer key). */
  readonly clientId: string;
  readonly publicKey: KeyObject;
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
  /** Issuers of JWT bearer assertions (RFC 7523 §2.1) by their `iss`. */
  readonly assertionIssuers?: Readonly<Record<string, DemoAssertionIssuer>>;
}

export interface DemoAuthServer {
  readonly tokenUrl: string;
  /** Token requests answered so far, successful or not. */
  tokenRequests(): number;
  /** Refresh tokens presented after they were used up (outside any grace period). */
  rejectedReuses(): number;
  /** Issues a refresh token for a client and user, as an authorization flow would have. */
  issueRefreshToken(clientId: string, username: string): string;
  /** The claims of every JWT bearer assertion the server accepted, in order. */
  acceptedAssertions(): JWTPayload[];
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

  let tokenUrl = '';
  const issuers = options.assertionIssuers ?? {};
  const accepted: JWTPayload[] = [];
  /** The `jti` of every assertion accepted, until it expires: one assertion is one grant (RFC 7523 §3 item 7). */
  const seenJtis = new Map<string, number>();
  /**
   * The JWT bearer grant (RFC 7523 §2.1, §3): the assertion's signature under its issuer's key, `aud` the token URL,
   * `exp` in the future and not too far, `iat`, and a `jti` never seen before.
   */
  class JwtBearerGrant extends AbstractGrantType {
    async handle(request: Request, client: Client): Promise<Token> {
      const assertion = request.body.assertion;
      if (typeof assertion !== 'string' || assertion === '') {
        throw new InvalidRequestError('Missing parameter: `assertion`');
      }
      const issuer = issuerOf(assertion);
      const trusted = issuer === undefined ? undefined : issuers[issuer];
      if (trusted === undefined || trusted.clientId !== client.id) {
        throw new InvalidGrantError('Invalid grant: unknown assertion issuer');
      }
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(assertion, trusted.publicKey, {
          audience: tokenUrl,
          issuer,
          maxTokenAge: '10 minutes',
          requiredClaims: ['exp', 'iat', 'jti', 'sub'],
        }));
      } catch {
        throw new InvalidGrantError('Invalid grant: the assertion does not verify');
      }
      const now = Date.now() / 1000;
      for (const [jti, exp] of seenJtis) if (exp < now) seenJtis.delete(jti);
      const jti = String(payload.jti);
      if (seenJtis.has(jti)) throw new InvalidGrantError('Invalid grant: the assertion was used before');
      seenJtis.set(jti, payload.exp ?? now);
      accepted.push(payload);
      const user = { id: String(payload.sub) };
      const scope = await this.validateScope(user, client, this.getScope(request));
      const token = {
        accessToken: await this.generateAccessToken(client, user, scope || []),
        accessTokenExpiresAt: this.getAccessTokenExpiresAt(),
        scope: scope || [],
      } as Token;
      return model.saveToken(token, client, user);
    }
  }

  const oauth = new OAuth2Server({
    model,
    accessTokenLifetime: options.accessTokenLifetime ?? 3600,
    requireClientAuthentication: {
      password: true,
      refresh_token: true,
      client_credentials: true,
      [JWT_BEARER_GRANT_TYPE]: false,
    },
    extendedGrantTypes: { [JWT_BEARER_GRANT_TYPE]: JwtBearerGrant },
  });

  /** Without client credentials, the assertion's issuer names the client, as Salesforce and Google do it. */
  const clientOfAssertion = (body: Record<string, string>): string | undefined => {
    if (body.grant_type !== JWT_BEARER_GRANT_TYPE || body.client_id !== undefined || body.assertion === undefined)
      return undefined;
    const issuer = issuerOf(body.assertion);
    return issuer === undefined ? undefined : issuers[issuer]?.clientId;
  };

  let requests = 0;
  const server: Server = createServer((incoming, outgoing) => {
    requests += 1;
    handleToken(oauth, incoming, options.delayMs ?? 0, clientOfAssertion)
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
  tokenUrl = `http://127.0.0.1:${port}/oauth/token`;

  return {
    tokenUrl,
    acceptedAssertions: () => [...accepted],
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

/** The unverified `iss` of an assertion: only to find the key that then verifies it. */
function issuerOf(assertion: string): string | undefined {
  try {
    const { iss } = decodeJwt(assertion);
    return typeof iss === 'string' ? iss : undefined;
  } catch {
    return undefined;
  }
}

async function handleToken(
  oauth: OAuth2Server,
  incoming: IncomingMessage,
  delayMs: number,
  clientOfAssertion: (body: Record<string, string>) => string | undefined,
) {
  const chunks: Buffer[] = [];
  for await (const chunk of incoming) chunks.push(chunk as Buffer);
  if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
  const body = Object.fromEntries(new URLSearchParams(Buffer.concat(chunks).toString('utf8')));
  const headers = { ...incoming.headers } as Record<string, string>;
  const authorization = decodeBasicCredentials(headers.authorization);
  if (authorization !== undefined) headers.authorization = authorization;
  const assertedClient = headers.authorization === undefined ? clientOfAssertion(body) : undefined;
  if (assertedClient !== undefined) body.client_id = assertedClient;
  const request = new Request({ method: incoming.method ?? 'POST', headers, query: {}, body });
  const response = new Response();
  try {
    await oauth.token(request, response);
  } catch {
    // The library has already written the OAuth error into the response.
  }
  return { status: response.status ?? 500, headers: response.headers ?? {}, body: response.body ?? {} };
}
