import type { ConnectorDocument } from '../connector.ts';
import { misconfigured, VendorError } from '../errors.ts';
import { type HttpClient, refusedDestination } from '../http.ts';
import type { ClientAuthMethod } from './client-auth.ts';
import { buildTokenRequest } from './token-request.ts';
import { processTokenResponse, type TokenSet } from './token-response.ts';

export interface TokenClientDeps {
  readonly http: HttpClient;
  readonly now: () => number;
  readonly sleep: (ms: number) => Promise<void>;
  readonly random: () => number;
  /** Per-attempt timeout in milliseconds. */
  readonly attemptTimeoutMs: number;
  /** Everything one token request may take, retries included. */
  readonly deadlineMs: number;
  /** Attempts in all when the server fails transiently (5xx, 429, reset, timeout). */
  readonly maxAttempts: number;
}

export interface TokenGrant {
  readonly scope: string | undefined;
  readonly refreshToken?: string | undefined;
  /** The method that worked last time for this connector, if known. */
  readonly rememberedAuthMethod?: ClientAuthMethod | undefined;
}

export interface TokenResult {
  readonly tokens: TokenSet;
  /** The client authentication the server accepted, to remember for the next request. */
  readonly authMethod: ClientAuthMethod;
}

const DEFAULT_EXPIRES_IN = 3600;

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

async function send(
  deps: TokenClientDeps,
  document: ConnectorDocument,
  grant: TokenGrant,
  method: ClientAuthMethod,
  deadline: number,
) {
  const request = buildTokenRequest(document, {
    authMethod: method,
    scope: grant.scope,
    refreshToken: grant.refreshToken,
  });
  let response: Awaited<ReturnType<HttpClient>>;
  try {
    const timeout = Math.max(1, Math.min(deps.attemptTimeoutMs, deadline - deps.now()));
    response = await deps.http({ ...request, signal: AbortSignal.timeout(timeout) });
  } catch (cause) {
    const refused = refusedDestination(cause);
    if (refused !== undefined) throw misconfigured('tokenUrl', refused.message);
    // Connection refused, reset, DNS failure or timeout: the message carries no request data.
    throw new VendorError('upstream_unavailable', 'The token server could not be reached.', { cause });
  }
  return response;
}

/** One token request, falling back from Basic to body authentication once when none is configured. */
async function requestOnce(
  deps: TokenClientDeps,
  document: ConnectorDocument,
  grant: TokenGrant,
  deadline: number,
): Promise<TokenResult> {
  const attempts = authAttempts(document, grant.rememberedAuthMethod);
  let lastError: unknown;
  for (const [index, method] of attempts.entries()) {
    const response = await send(deps, document, grant, method, deadline);
    try {
      const tokens = processTokenResponse(response, document.defaultExpiresIn ?? DEFAULT_EXPIRES_IN, deps.now());
      return { tokens, authMethod: method };
    } catch (error) {
      lastError = error;
      const canFallBack = index < attempts.length - 1 && isClientAuthRefusal(error, response.status);
      if (!canFallBack) throw error;
    }
  }
  throw lastError;
}

/** Only a server that is down, slow or rate-limiting is asked again; a refusal is final. */
const isTransient = (error: unknown): error is VendorError =>
  error instanceof VendorError && error.code === 'upstream_unavailable';

/**
 * Requests a token for the connector's grant (CONTRACT §2): Basic-to-body fallback once when
 * `clientAuthentication` is absent, and up to `maxAttempts` tries on transient failures with jittered
 * exponential backoff that honours `Retry-After`, all within `deadlineMs`.
 */
export async function requestToken(
  deps: TokenClientDeps,
  document: ConnectorDocument,
  grant: TokenGrant,
): Promise<TokenResult> {
  const deadline = deps.now() + deps.deadlineMs;
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await requestOnce(deps, document, grant, deadline);
    } catch (error) {
      if (!isTransient(error) || attempt >= deps.maxAttempts) throw error;
      const backoff =
        error.retryAfterSeconds !== undefined
          ? error.retryAfterSeconds * 1000
          : 200 * 2 ** (attempt - 1) * (0.5 + deps.random());
      // A Retry-After beyond the deadline is answered now, with the server's own hint.
      if (deps.now() + backoff >= deadline) throw error;
      await deps.sleep(backoff);
    }
  }
}
