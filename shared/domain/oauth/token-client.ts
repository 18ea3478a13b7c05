import { misconfigured, VendorError } from '../../core/errors.ts';
import type { Clock } from '../../ports/clock.ts';
import type { HttpClient } from '../../ports/http.ts';
import type { KmsSigner } from '../../ports/kms-signer.ts';
import type { ConnectorDocument } from '../connector.ts';
import { refusedDestination } from '../network-policy.ts';
import { clientAssertionClaims, grantAssertionClaims, signJwt } from './assertion.ts';
import type { ClientAuthMethod } from './client-auth.ts';
import { type AuthorizationCodeGrant, buildTokenRequest } from './token-request.ts';
import { processTokenResponse, type TokenSet } from './token-response.ts';
import { secretsOf, tokensWithoutEchoedSecrets, withoutEchoedSecrets } from './upstream-secrets.ts';

export interface TokenClientDeps {
  readonly http: HttpClient;
  readonly clock: Clock;
  /**
   * Per-attempt timeout in milliseconds, and the least time worth sending a request with: with less left before the
   * deadline, nothing is sent.
   */
  readonly attemptTimeoutMs: number;
  /** Everything one token request may take, retries included. */
  readonly deadlineMs: number;
  /** Attempts in all when the server fails transiently (5xx, 429, reset, timeout). */
  readonly maxAttempts: number;
  /** Signs assertions with a connector's `signingKey.kmsKeyId`. */
  readonly kms?: KmsSigner | undefined;
}

export interface TokenGrant {
  readonly scope: string | undefined;
  readonly refreshToken?: string | undefined;
  /** Set: exchange this authorization code instead (`token-vendor connect`); like a refresh token, used once. */
  readonly authorizationCode?: AuthorizationCodeGrant | undefined;
  /** The method that worked last time for this connector, if known. */
  readonly rememberedAuthMethod?: ClientAuthMethod | undefined;
}

export interface TokenResult {
  readonly tokens: TokenSet;
  /** The client authentication the server accepted, to remember for the next request. */
  readonly authMethod: ClientAuthMethod;
}

const DEFAULT_EXPIRES_IN = 3600;

/** A refresh token or an authorization code: presented once, never again after the server may have seen it. */
const singleUse = (grant: TokenGrant): boolean =>
  grant.refreshToken !== undefined || grant.authorizationCode !== undefined;

/**
 * The order in which to try client authentication. An explicit `clientAuthentication` is the only one tried;
 * a public client (no secret) sends only its ID; otherwise the one that worked last goes first, then the other.
 */
export function authAttempts(document: ConnectorDocument, remembered?: ClientAuthMethod): ClientAuthMethod[] {
  if (document.clientAuthentication !== undefined) return [document.clientAuthentication];
  if (document.clientSecret === undefined) return ['none'];
  return remembered === 'body' ? ['body', 'basic'] : ['basic', 'body'];
}

/** A 401, or `invalid_client` in any status, is the one refusal worth one more try with the other method. */
function isClientAuthRefusal(error: unknown, status: number | undefined): boolean {
  return error instanceof VendorError && (status === 401 || error.upstreamError === 'invalid_client');
}

/**
 * The assertions one request carries, signed for it alone (each has its own `jti` and `exp`): the grant's for
 * `jwt_bearer`, the client's for `private_key_jwt`. Signing counts against the attempt's time.
 */
async function signAssertions(deps: TokenClientDeps, document: ConnectorDocument, method: ClientAuthMethod) {
  const signing = { kms: deps.kms, now: deps.clock.now(), signal: AbortSignal.timeout(deps.attemptTimeoutMs) };
  const [assertion, clientAssertion] = await Promise.all([
    document.grantType === 'jwt_bearer'
      ? signJwt(signing, document, grantAssertionClaims(document, signing.now))
      : undefined,
    method === 'private_key_jwt' ? signJwt(signing, document, clientAssertionClaims(document, signing.now)) : undefined,
  ]);
  return { assertion, clientAssertion };
}

async function send(
  deps: TokenClientDeps,
  document: ConnectorDocument,
  grant: TokenGrant,
  method: ClientAuthMethod,
  deadline: number,
) {
  if (deadline - deps.clock.now() < deps.attemptTimeoutMs) throw notSent();
  let assertions: Awaited<ReturnType<typeof signAssertions>>;
  try {
    assertions = await signAssertions(deps, document, method);
  } catch (error) {
    // KMS throttled or down: the token server has seen nothing, so a refresh token is still unspent and the
    // attempt may be repeated like a refused connection.
    if (!(error instanceof VendorError) || error.code !== 'upstream_unavailable') throw error;
    throw new VendorError(error.code, error.message, {
      cause: Object.assign(new Error('request not sent: the assertion could not be signed', { cause: error.cause }), {
        code: 'ENOTSIGNED',
      }),
    });
  }
  const request = buildTokenRequest(document, {
    authMethod: method,
    scope: grant.scope,
    refreshToken: grant.refreshToken,
    authorizationCode: grant.authorizationCode,
    ...assertions,
  });
  const left = deadline - deps.clock.now();
  if (left < deps.attemptTimeoutMs) {
    // A request cut short by its timeout may still be processed by the server: for a refresh token that is an
    // exchange whose answer is lost. Better not to send it at all.
    throw notSent();
  }
  // A refresh token (or code) is presented once, so that one attempt gets all the time there is.
  const timeout = singleUse(grant) ? left : deps.attemptTimeoutMs;
  let response: Awaited<ReturnType<HttpClient>>;
  try {
    response = await deps.http({ ...request, signal: AbortSignal.timeout(timeout) });
  } catch (cause) {
    const refused = refusedDestination(cause);
    if (refused !== undefined) throw misconfigured('tokenUrl', refused.message);
    // Connection refused, reset, DNS failure or timeout: the message carries no request data.
    throw new VendorError('upstream_unavailable', 'The token server could not be reached.', { cause });
  }
  // A signed assertion is a credential until it expires: an answer that echoes it is not passed on either.
  const sentSecrets = [assertions.assertion, assertions.clientAssertion].filter((value) => value !== undefined);
  return { response, sentSecrets };
}

const notSent = () =>
  new VendorError('upstream_unavailable', 'Too little time was left to ask the token server.', {
    cause: Object.assign(new Error('request not sent'), { code: 'ENOTSENT' }),
  });

/** One token request, falling back from Basic to body authentication once when none is configured. */
async function requestOnce(
  deps: TokenClientDeps,
  document: ConnectorDocument,
  grant: TokenGrant,
  deadline: number,
): Promise<TokenResult> {
  const attempts = authAttempts(document, grant.rememberedAuthMethod);
  const code = grant.authorizationCode;
  const secrets = [
    ...secretsOf(document, grant.refreshToken),
    ...(code === undefined ? [] : [code.code, code.codeVerifier]),
  ];
  let lastError: unknown;
  for (const [index, method] of attempts.entries()) {
    const { response, sentSecrets } = await send(deps, document, grant, method, deadline);
    const echoable = [...secrets, ...sentSecrets];
    try {
      const tokens = processTokenResponse(response, document.defaultExpiresIn ?? DEFAULT_EXPIRES_IN, deps.clock.now());
      return { tokens: tokensWithoutEchoedSecrets(tokens, echoable), authMethod: method };
    } catch (caught) {
      const error = refusedAssertion(withoutEchoedSecrets(caught, echoable), document, method);
      lastError = error;
      const canFallBack = index < attempts.length - 1 && isClientAuthRefusal(error, response.status);
      if (!canFallBack) throw error;
    }
  }
  throw lastError;
}

/**
 * A refusal of a signed assertion says which fields to check (never their values): the server's `error` alone
 * (`invalid_grant`, `invalid_client`) does not tell an operator that the key or the claims are the suspects.
 */
function refusedAssertion(error: unknown, document: ConnectorDocument, method: ClientAuthMethod): unknown {
  if (!(error instanceof VendorError) || error.code !== 'upstream_rejected') return error;
  const code = error.upstreamError;
  const fields =
    method === 'private_key_jwt' && code === 'invalid_client'
      ? 'signingKey, signingAlgorithm, and the public key registered for clientId'
      : document.grantType === 'jwt_bearer' &&
          (code === 'invalid_grant' || (method === 'none' && code === 'invalid_client'))
        ? 'signingKey, signingAlgorithm, assertionIssuer, assertionSubject, assertionAudience, assertionClaims'
        : undefined;
  if (fields === undefined) return error;
  return new VendorError('upstream_rejected', `${error.message} The signed assertion was refused: check ${fields}.`, {
    ...(code === undefined ? {} : { upstreamError: code }),
    ...(error.upstreamStatus === undefined ? {} : { upstreamStatus: error.upstreamStatus }),
  });
}

/** Only a server that is down, slow or rate-limiting is asked again; a refusal is final. */
const isTransient = (error: unknown): error is VendorError =>
  error instanceof VendorError && error.code === 'upstream_unavailable';

/** Socket errors that happen before a byte of the request leaves: the server cannot have seen it. */
const UNSENT_CODES = new Set([
  'ENOTSENT',
  'ENOTSIGNED',
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  // The HTTP client's: the time ran out before a connection was made.
  'ENOTCONNECTED',
]);

/** Did this failure prove that the request never reached the server (so presenting the same token again is safe)? */
export function neverSent(error: unknown): boolean {
  for (let current = error; current instanceof Error; current = current.cause) {
    if ('code' in current && typeof current.code === 'string' && UNSENT_CODES.has(current.code)) return true;
  }
  return false;
}

/** The request was not sent because too little time was left: there is nothing to learn from it, or retry. */
export function notAsked(error: unknown): boolean {
  return (
    error instanceof VendorError &&
    error.cause instanceof Error &&
    'code' in error.cause &&
    error.cause.code === 'ENOTSENT'
  );
}

/**
 * Might the server have acted on a request that failed (timeout or reset after sending, a 5xx)? For a refresh
 * token that means it may have been rotated away without the vendor seeing the new one.
 */
export function outcomeUnknown(error: unknown): boolean {
  return isTransient(error) && !neverSent(error) && error.upstreamStatus !== 429;
}

/**
 * Requests a token for the connector's grant (CONTRACT §2): Basic-to-body fallback once when
 * `clientAuthentication` is absent, and up to `maxAttempts` tries on transient failures with jittered
 * exponential backoff that honours `Retry-After`, all within `deadlineMs`. A refresh token is presented once:
 * it is sent again only after a failure that proves the server never saw it (RFC 9700 §4.14.2: a server with
 * reuse detection revokes the whole grant when a spent refresh token comes back).
 */
export async function requestToken(
  deps: TokenClientDeps,
  document: ConnectorDocument,
  grant: TokenGrant,
): Promise<TokenResult> {
  const deadline = deps.clock.now() + deps.deadlineMs;
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await requestOnce(deps, document, grant, deadline);
    } catch (error) {
      // A refresh token is sent again only when the server cannot have seen it; no time left is final.
      const retryable = isTransient(error) && (!singleUse(grant) || neverSent(error)) && !notAsked(error);
      if (!retryable || attempt >= deps.maxAttempts) throw error;
      const backoff =
        error.retryAfterSeconds !== undefined
          ? error.retryAfterSeconds * 1000
          : 200 * 2 ** (attempt - 1) * (0.5 + deps.clock.random());
      // A Retry-After beyond the deadline is answered now, with the server's own hint.
      if (deps.clock.now() + backoff >= deadline) throw error;
      await deps.clock.sleep(backoff);
    }
  }
}
