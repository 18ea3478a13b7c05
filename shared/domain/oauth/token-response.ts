import * as z from 'zod/mini';
import { VendorError } from '../../core/errors.ts';
import { parseRetryAfter } from '../../core/retry-after.ts';
import type { HttpResponse } from '../../ports/http.ts';

/** What the vendor keeps of a successful token answer (RFC 6749 §5.1). */
export interface TokenSet {
  readonly accessToken: string;
  /** `Bearer` whatever case the server used; other types as sent. */
  readonly tokenType: string;
  /** Seconds, after defaulting and clamping. */
  readonly expiresIn: number;
  readonly scope: string | undefined;
  readonly refreshToken: string | undefined;
}

/** Shortest and longest lifetimes believed; outside them the server's number is absurd and is clamped. */
export const MIN_EXPIRES_IN = 1;
export const MAX_EXPIRES_IN = 365 * 24 * 3600;

// RFC 6749 §5.2: error codes are drawn from %x20-21 / %x23-5B / %x5D-7E; as a code, without spaces, and no longer
// than any registered one. Anything else is not passed on.
const OAUTH_ERROR_CODE = /^[\x21\x23-\x5B\x5D-\x7E]{1,64}$/;

const errorAnswer = z.looseObject({ error: z.string() });

// Lenient where real servers are sloppy: numeric strings, any token_type case, extra fields.
/** RFC 6749 §A.12, §A.17: access and refresh tokens are visible ASCII and space; callers put them in a header. */
const VSCHAR = /^[\x20-\x7E]+$/;
/** RFC 6749 §A.13: type-name = 1*name-char; name-char = "-" / "." / "_" / DIGIT / ALPHA. */
const TYPE_NAME = /^[A-Za-z0-9._-]+$/;

const nonEmpty = z.string().check(z.minLength(1));
/** A field that is present but malformed is treated as absent. */
const lenient = <T extends z.ZodMiniType>(schema: T) => z.catch(z.optional(schema), undefined);
const successAnswer = z.looseObject({
  access_token: nonEmpty,
  token_type: lenient(nonEmpty),
  expires_in: lenient(z.union([z.number(), z.string()])),
  scope: lenient(z.string()),
  refresh_token: lenient(nonEmpty),
});

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Seconds from `Retry-After` (delta-seconds or HTTP-date), when present and sane. */
export function retryAfterSeconds(headers: Headers, now: number): number | undefined {
  return parseRetryAfter(headers.get('retry-after'), now);
}

/**
 * The lifetime to believe. 0 (Mailchimp sends it for tokens that never expire), `null`, a missing or a negative value
 * say nothing usable: the connector's `defaultExpiresIn` applies.
 */
function expiresInSeconds(value: number | string | undefined, fallback: number): number {
  const seconds = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  if (typeof seconds !== 'number' || !Number.isFinite(seconds) || seconds <= 0) return fallback;
  return Math.min(MAX_EXPIRES_IN, Math.max(MIN_EXPIRES_IN, Math.floor(seconds)));
}

/** camelCase names some servers use (plentymarkets), and Facebook's `expires`, for the RFC's names. */
const ALIASES: Readonly<Record<string, string>> = {
  accessToken: 'access_token',
  tokenType: 'token_type',
  expiresIn: 'expires_in',
  refreshToken: 'refresh_token',
  expires: 'expires_in',
};

/**
 * The answer as an object with RFC 6749's names: JSON, or a form-encoded body as older Facebook and GitHub servers
 * send (requests-oauthlib's compliance fixes cover the same); an RFC name present wins over its alias.
 */
function readAnswer(text: string): unknown {
  let answer = parseJson(text);
  if (answer === undefined && /^[\w.~%+-]+=[^&]*(&[\w.~%+-]+=[^&]*)*$/.test(text.trim())) {
    const form = new URLSearchParams(text.trim());
    if (form.has('access_token') || form.has('error')) answer = Object.fromEntries(form);
  }
  if (typeof answer !== 'object' || answer === null || Array.isArray(answer)) return answer;
  const named: Record<string, unknown> = { ...(answer as Record<string, unknown>) };
  for (const [alias, name] of Object.entries(ALIASES)) {
    if (named[name] === undefined && named[alias] !== undefined) named[name] = named[alias];
  }
  return named;
}

/**
 * Turns a token endpoint's answer into a {@link TokenSet}, or the contract's error.
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-5.1
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-5.2
 */
export function processTokenResponse(response: HttpResponse, defaultExpiresIn: number, now: number): TokenSet {
  const { status } = response;
  if (status >= 500 || status === 429 || status === 408) {
    const retryAfter = retryAfterSeconds(response.headers, now);
    throw new VendorError('upstream_unavailable', `The token server answered HTTP ${status}.`, {
      upstreamStatus: status,
      ...(retryAfter === undefined ? {} : { retryAfterSeconds: retryAfter }),
    });
  }
  if (response.oversized === true) {
    // Not a token answer, however the server is doing; asking again would bring the same.
    throw new VendorError(
      'upstream_invalid_response',
      'The token server answered with more than a token answer holds.',
    );
  }
  const json = readAnswer(response.text);
  // An OAuth error, whatever the status: some servers send them with 200.
  const oauthError = errorAnswer.safeParse(json);
  if (oauthError.success) {
    const code = oauthError.data.error;
    throw new VendorError('upstream_rejected', `The token server refused the grant (HTTP ${status}).`, {
      ...(OAUTH_ERROR_CODE.test(code) ? { upstreamError: code } : {}),
    });
  }
  if (status >= 300 && status < 400) {
    // Redirects are not followed (they would carry credentials elsewhere); a redirect is not a token.
    throw new VendorError('upstream_invalid_response', `The token server answered with a redirect (HTTP ${status}).`);
  }
  if (status < 200 || status >= 300) {
    throw new VendorError('upstream_rejected', `The token server refused the request with HTTP ${status}.`);
  }
  if (json === undefined) {
    throw new VendorError('upstream_invalid_response', 'The token server answered with something that is not JSON.');
  }
  const answer = successAnswer.safeParse(json);
  if (!answer.success) {
    throw new VendorError('upstream_invalid_response', 'The token server answer has no access_token.');
  }
  const { access_token: accessToken, refresh_token: refreshToken, token_type: tokenType } = answer.data;
  if (
    !VSCHAR.test(accessToken) ||
    (refreshToken !== undefined && !VSCHAR.test(refreshToken)) ||
    (tokenType !== undefined && !TYPE_NAME.test(tokenType))
  ) {
    // Control characters or non-ASCII would end up in a caller's header: not a token (RFC 6749 §A.12, §A.13).
    throw new VendorError('upstream_invalid_response', 'The token server answered with a malformed token.');
  }
  return {
    accessToken: answer.data.access_token,
    tokenType: tokenType === undefined || tokenType.toLowerCase() === 'bearer' ? 'Bearer' : tokenType,
    expiresIn: expiresInSeconds(answer.data.expires_in, defaultExpiresIn),
    // An empty scope says nothing; the caller then reports the scope it asked for.
    scope: answer.data.scope === '' ? undefined : answer.data.scope,
    refreshToken: answer.data.refresh_token,
  };
}
