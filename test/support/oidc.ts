import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Provider from 'oidc-provider';

export interface OidcClient {
  readonly client_id: string;
  readonly client_secret: string;
  readonly token_endpoint_auth_method: 'client_secret_basic' | 'client_secret_post';
  readonly grant_types: readonly ('client_credentials' | 'refresh_token')[];
  readonly scope?: string;
}

export interface OidcServerOptions {
  readonly clients: readonly OidcClient[];
  /** Lifetime of client-credentials access tokens, seconds. @default 3600 */
  readonly clientCredentialsTtl?: number;
  /** Lifetime of access tokens from the refresh grant, seconds. @default 3600 */
  readonly accessTokenTtl?: number;
  /** Milliseconds added before every token answer, to model a slow server. */
  readonly delayMs?: number;
}

export interface OidcServer {
  readonly tokenUrl: string;
  /** Every request that reached the token endpoint. */
  tokenRequests(): number;
  /** The OAuth errors the server answered with, by code (e.g. invalid_grant on refresh-token reuse). */
  errors(): string[];
  /** Refresh tokens the server saw reused (which revokes the grant). */
  reuses(): number;
  /** A refresh token for a new grant, as an authorization-code flow with offline_access would have issued. */
  issueRefreshToken(clientId: string, accountId?: string): Promise<string>;
  close(): Promise<void>;
}

/**
 * A real `oidc-provider` on loopback: client credentials (Basic or post), and the refresh-token grant with
 * rotation turned on, which revokes the whole grant when a used refresh token is presented again.
 */
export async function startOidcServer(options: OidcServerOptions): Promise<OidcServer> {
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const issuer = `http://127.0.0.1:${port}`;

  const provider = new Provider(issuer, {
    clients: options.clients.map((client) => ({
      ...client,
      grant_types: [...client.grant_types],
      redirect_uris: client.grant_types.includes('refresh_token') ? ['https://client.example/callback'] : [],
      response_types: [],
    })),
    features: { clientCredentials: { enabled: true }, devInteractions: { enabled: false } },
    scopes: ['openid', 'offline_access', 'read', 'write', 'admin'],
    rotateRefreshToken: true,
    ttl: {
      AccessToken: options.accessTokenTtl ?? 3600,
      ClientCredentials: options.clientCredentialsTtl ?? 3600,
      RefreshToken: 24 * 3600,
      Grant: 24 * 3600,
    },
    findAccount: async (_ctx: unknown, accountId: string) => ({ accountId, claims: async () => ({ sub: accountId }) }),
  });
  const errors: string[] = [];
  let reuses = 0;
  provider.on(
    'grant.error',
    (_ctx: unknown, error: { error?: string; error_description?: string; message?: string }) => {
      errors.push(error.error ?? 'unknown');
      if (/already used/.test(error.message ?? '') || /already used/.test(error.error_description ?? '')) reuses += 1;
    },
  );

  let requests = 0;
  const callback = provider.callback();
  server.on('request', (request, response) => {
    if (request.url?.startsWith('/token') === true) requests += 1;
    const delay = options.delayMs ?? 0;
    if (delay > 0) setTimeout(() => callback(request, response), delay);
    else callback(request, response);
  });

  return {
    tokenUrl: `${issuer}/token`,
    tokenRequests: () => requests,
    errors: () => [...errors],
    reuses: () => reuses,
    async issueRefreshToken(clientId, accountId = 'user-1') {
      const client = await provider.Client.find(clientId);
      if (client === undefined) throw new Error(`unknown client ${clientId}`);
      const grant = new provider.Grant({ accountId, clientId });
      grant.addOIDCScope('openid offline_access');
      const grantId = await grant.save();
      const refreshToken = new provider.RefreshToken({
        accountId,
        client,
        grantId,
        gty: 'authorization_code',
        scope: 'openid offline_access',
        authTime: Math.floor(Date.now() / 1000),
      });
      return refreshToken.save();
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
