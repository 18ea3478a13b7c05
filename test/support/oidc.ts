import type { KeyObject } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { decodeJwt, type JWK, type JWTPayload, jwtVerify } from 'jose';
import Provider, { errors } from 'oidc-provider';
import { JWT_BEARER_GRANT_TYPE } from '../../shared/core/identifiers.ts';

export type OidcClient = {
  readonly client_id: string;
  readonly grant_types: readonly (
    | 'client_credentials'
    | 'refresh_token'
    | 'authorization_code'
    | 'password'
    | typeof JWT_BEARER_GRANT_TYPE
  )[];
  readonly scope?: string;
  /**
   * For `authorization_code` clients: registered as a native app (RFC 8252 §7.3), so that a loopback redirect URI
   * matches on any port. @default ['http://127.0.0.1/callback']
   */
  readonly redirect_uris?: readonly string[];
} & (
  | {
      readonly client_secret: string;
      readonly token_endpoint_auth_method: 'client_secret_basic' | 'client_secret_post';
    }
  | {
      /** RFC 7523 §2.2: the client proves itself with an assertion signed by a key of `jwks`. */
      readonly token_endpoint_auth_method: 'private_key_jwt';
      readonly jwks: { readonly keys: readonly JWK[] };
    }
);

export interface OidcServerOptions {
  readonly clients: readonly OidcClient[];
  /** Lifetime of client-credentials access tokens, seconds. @default 3600 */
  readonly clientCredentialsTtl?: number;
  /** Lifetime of access tokens from the refresh grant, seconds. @default 3600 */
  readonly accessTokenTtl?: number;
  /** Milliseconds added before every token answer, to model a slow server. */
  readonly delayMs?: number;
  /**
   * Milliseconds between the provider producing a token answer (a refresh token is already rotated) and its first
   * byte reaching the client: a server that did the work, then its answer took long to arrive. @default 0
   */
  readonly answerDelayMs?: number;
  /**
   * `true`: a used refresh token presented again revokes the whole grant (oidc-provider's rotation with reuse
   * detection; `reuses()` counts it). `false`: refresh tokens still rotate, but a used one stays valid, like a
   * server with an unlimited reuse interval. @default true
   */
  readonly strict?: boolean;
  /**
   * oidc-provider's development sign-in and consent pages (any login and password), for a browser to go through the
   * authorization endpoint. @default false
   */
  readonly interactions?: boolean;
  /** Users of the password grant (registered as a custom grant: oidc-provider has none). */
  readonly users?: Readonly<Record<string, string>>;
  /** Keys that verify JWT bearer assertions (RFC 7523 §2.1, a custom grant), by the assertion's `iss`. */
  readonly assertionIssuers?: Readonly<Record<string, KeyObject>>;
}

/**
 * A token request stopped before oidc-provider saw it; the test decides what happens to it and to its answer. It is
 * either released or processed, once (a second call throws), and skips `delayMs`.
 */
export interface HeldRequest {
  /** Hands it to the provider, unless the client's connection closed meanwhile: then it is dropped, never processed. */
  release(): void;
  /**
   * Hands it to the provider now (a refresh token is rotated at once) and settles once the provider has produced its
   * whole answer; no byte of that answer reaches the client until `releaseAnswer()`.
   */
  processAndHoldAnswer(): Promise<void>;
  /** Sends the held answer; called before the answer is produced, it goes out as soon as it is. */
  releaseAnswer(): void;
  /** The client's connection closed before `release()`, so the provider never saw the request. */
  readonly dropped: boolean;
  /** Settles when the client's connection closes before its answer was sent: await it after aborting the client. */
  readonly clientGone: Promise<void>;
}

export interface OidcServer {
  readonly tokenUrl: string;
  /** The authorization endpoint (with `interactions`, a browser can sign in and consent there). */
  readonly authorizationUrl: string;
  /** Every request that reached the token endpoint. */
  tokenRequests(): number;
  /** The OAuth errors the server answered with, by code (e.g. invalid_grant on refresh-token reuse). */
  errors(): string[];
  /** Refresh tokens the server saw reused (which revokes the grant). */
  reuses(): number;
  /** A refresh token for a new grant, as an authorization-code flow with offline_access would have issued. */
  issueRefreshToken(clientId: string, accountId?: string): Promise<string>;
  /**
   * Holds the next request to the token endpoint before the provider sees it; settles once that request has arrived.
   * Requests nobody holds pass through as usual (after `delayMs`).
   */
  holdNext(): Promise<HeldRequest>;
  /** Changes `answerDelayMs` for answers produced from now on. */
  setAnswerDelay(ms: number): void;
  /** Held requests dropped because their client had gone before `release()`. */
  droppedRequests(): number;
  /** Every refresh_token the server put in a successful token answer, in order, whether or not the answer arrived. */
  issuedRefreshTokens(): string[];
  /** The claims of every JWT bearer assertion the server accepted, in order. */
  acceptedAssertions(): JWTPayload[];
  close(): Promise<void>;
}

/** How a token answer leaves: `auto` once produced (after the answer delay), `hold` only when `send()` is called. */
interface CapturedAnswer {
  policy: 'auto' | 'hold';
  /** Settles when the provider has called `end()`. */
  readonly produced: Promise<void>;
  send(): void;
}

type Writer = (...args: unknown[]) => unknown;

/**
 * A real `oidc-provider` on loopback: client credentials (Basic or post), and the refresh-token grant with
 * rotation turned on, which revokes the whole grant when a used refresh token is presented again. Token answers can be
 * held or delayed after the provider produced them, to model a server that rotated but whose answer never arrived.
 */
export async function startOidcServer(options: OidcServerOptions): Promise<OidcServer> {
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const issuer = `http://127.0.0.1:${port}`;

  const provider = new Provider(issuer, {
    clients: options.clients.map(({ redirect_uris, ...client }) => {
      const registered = {
        ...client,
        ...('jwks' in client ? { jwks: { keys: [...client.jwks.keys] } } : {}),
        grant_types: [...client.grant_types],
      };
      return client.grant_types.includes('authorization_code')
        ? {
            ...registered,
            application_type: 'native' as const,
            redirect_uris: [...(redirect_uris ?? ['http://127.0.0.1/callback'])],
            response_types: ['code'],
          }
        : {
            ...registered,
            redirect_uris: client.grant_types.includes('refresh_token') ? ['https://client.example/callback'] : [],
            response_types: [],
          };
    }),
    features: {
      clientCredentials: { enabled: true },
      devInteractions: { enabled: options.interactions === true },
    },
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
  const accepted: JWTPayload[] = [];
  registerExtraGrants(provider, options, `${issuer}/token`, accepted);
  // Rotation marks the used token consumed, and a consumed token presented again revokes the grant; not marking it
  // leaves the old token valid next to the new one.
  if (options.strict === false) provider.RefreshToken.prototype.consume = async () => {};
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
  let dropped = 0;
  let answerDelay = options.answerDelayMs ?? 0;
  const issued: string[] = [];
  const holders: ((held: HeldRequest) => void)[] = [];
  const timers = new Set<NodeJS.Timeout>();

  /**
   * Keeps the answer's bytes from the socket by wrapping write/end before koa gets the response (koa ends a JSON
   * body with one `res.end(string)`, headers only set, so nothing leaves before `end`), records the refresh token it
   * carries, and replays the calls on the real methods when the answer may go.
   */
  const capture = (response: ServerResponse): CapturedAnswer => {
    const target = response as unknown as { write: Writer; end: Writer };
    const original = { write: target.write, end: target.end };
    const calls: { method: 'write' | 'end'; args: unknown[] }[] = [];
    const chunks: Buffer[] = [];
    let produced = false;
    let sendRequested = false;
    let sent = false;
    let markProduced = () => {};
    const producedPromise = new Promise<void>((resolve) => {
      markProduced = resolve;
    });
    const keep = (chunk: unknown, encoding: unknown) => {
      if (typeof chunk === 'string')
        chunks.push(Buffer.from(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8'));
      else if (chunk instanceof Uint8Array) chunks.push(Buffer.from(chunk));
    };
    const send = () => {
      if (sent) return;
      sent = true;
      target.write = original.write;
      target.end = original.end;
      for (const call of calls) Reflect.apply(original[call.method], response, call.args);
    };
    const answer: CapturedAnswer = {
      policy: 'auto',
      produced: producedPromise,
      send() {
        sendRequested = true;
        if (produced) send();
      },
    };
    target.write = (...args: unknown[]) => {
      keep(args[0], args[1]);
      calls.push({ method: 'write', args });
      return true;
    };
    target.end = (...args: unknown[]) => {
      keep(args[0], args[1]);
      calls.push({ method: 'end', args });
      produced = true;
      if (response.statusCode === 200) {
        try {
          const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { refresh_token?: unknown };
          if (typeof body.refresh_token === 'string') issued.push(body.refresh_token);
        } catch {
          // Not JSON: no token to record.
        }
      }
      markProduced();
      if (sendRequested) send();
      else if (answer.policy === 'auto') {
        if (answerDelay <= 0) send();
        else {
          const timer = setTimeout(() => {
            timers.delete(timer);
            send();
          }, answerDelay);
          timers.add(timer);
        }
      }
      return response;
    };
    return answer;
  };

  const callback = provider.callback();
  const pass = (request: IncomingMessage, response: ServerResponse) => {
    const delay = options.delayMs ?? 0;
    if (delay > 0) setTimeout(() => callback(request, response), delay);
    else callback(request, response);
  };

  const hold = (request: IncomingMessage, response: ServerResponse, answer: CapturedAnswer): HeldRequest => {
    let state: 'held' | 'released' | 'dropped' = 'held';
    let gone = false;
    const clientGone = new Promise<void>((resolve) => {
      response.once('close', () => {
        if (response.writableFinished) return;
        gone = true;
        resolve();
      });
    });
    const claim = (name: string) => {
      if (state !== 'held') throw new Error(`${name}: the request was already ${state}`);
      state = 'released';
    };
    return {
      release() {
        claim('release');
        if (gone || request.socket.destroyed) {
          state = 'dropped';
          dropped += 1;
          return;
        }
        callback(request, response);
      },
      processAndHoldAnswer() {
        claim('processAndHoldAnswer');
        answer.policy = 'hold';
        callback(request, response);
        return answer.produced;
      },
      releaseAnswer: () => answer.send(),
      get dropped() {
        return state === 'dropped';
      },
      clientGone,
    };
  };

  server.on('request', (request, response) => {
    if (request.url?.startsWith('/token') === true) requests += 1;
    if (request.url?.split('?')[0] !== '/token') return pass(request, response);
    const answer = capture(response);
    const holder = holders.shift();
    if (holder === undefined) return pass(request, response);
    holder(hold(request, response, answer));
  });

  return {
    tokenUrl: `${issuer}/token`,
    authorizationUrl: `${issuer}/auth`,
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
    holdNext: () => new Promise((resolve) => holders.push(resolve)),
    setAnswerDelay(ms) {
      answerDelay = ms;
    },
    droppedRequests: () => dropped,
    issuedRefreshTokens: () => [...issued],
    acceptedAssertions: () => [...accepted],
    close: () =>
      new Promise((resolve) => {
        for (const timer of timers) clearTimeout(timer);
        timers.clear();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** An access token for a grant oidc-provider has no handler of its own for, in the client credentials' form. */
async function issueAccessToken(ctx: Parameters<Parameters<Provider['registerGrantType']>[1]>[0], scope?: string) {
  const token = new ctx.oidc.provider.ClientCredentials({ client: ctx.oidc.client, scope });
  const value = await token.save();
  ctx.body = {
    access_token: value,
    token_type: 'Bearer',
    expires_in: token.expiration,
    ...(scope === undefined ? {} : { scope }),
  };
}

/**
 * The password grant and the JWT bearer grant as custom grants: client authentication (secrets or `private_key_jwt`)
 * is oidc-provider's own, as for its built-in grants. The JWT bearer grant verifies the assertion's signature under
 * its issuer's key, `aud` (the token URL), `exp`, `iat` and `jti` (never twice).
 */
function registerExtraGrants(
  provider: Provider,
  options: OidcServerOptions,
  tokenUrl: string,
  accepted: JWTPayload[],
): void {
  const users = options.users ?? {};
  provider.registerGrantType(
    'password',
    async (ctx) => {
      const { username, password, scope } = ctx.oidc.params as { username?: string; password?: string; scope?: string };
      if (username === undefined || users[username] === undefined || users[username] !== password) {
        throw new errors.InvalidGrant('invalid credentials provided');
      }
      await issueAccessToken(ctx, scope);
    },
    ['username', 'password', 'scope'],
  );
  const issuers = options.assertionIssuers ?? {};
  const seen = new Set<string>();
  provider.registerGrantType(
    JWT_BEARER_GRANT_TYPE,
    async (ctx) => {
      const { assertion, scope } = ctx.oidc.params as { assertion?: string; scope?: string };
      if (assertion === undefined) throw new errors.InvalidRequest('missing required parameter: assertion');
      let issuer: string | undefined;
      try {
        issuer = decodeJwt(assertion).iss;
      } catch {
        throw new errors.InvalidGrant('the assertion is not a JWT');
      }
      const key = issuer === undefined ? undefined : issuers[issuer];
      if (key === undefined) throw new errors.InvalidGrant('unknown assertion issuer');
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(assertion, key, {
          audience: tokenUrl,
          issuer,
          maxTokenAge: '10 minutes',
          requiredClaims: ['exp', 'iat', 'jti', 'sub'],
        }));
      } catch {
        throw new errors.InvalidGrant('the assertion does not verify');
      }
      const jti = `${issuer}:${String(payload.jti)}`;
      if (seen.has(jti)) throw new errors.InvalidGrant('the assertion was used before');
      seen.add(jti);
      accepted.push(payload);
      await issueAccessToken(ctx, scope);
    },
    ['assertion', 'scope'],
  );
}
