import type { ErrorCode } from '../shared/core/errors.ts';
import { parseRetryAfter } from '../shared/core/retry-after.ts';

/**
 * Every `error` value of the contract (CONTRACT §3). `satisfies` makes the compiler refuse this list the moment
 * it misses or invents a code of the service's own {@link ErrorCode}.
 */
export const CONTRACT_ERROR_CODES = Object.keys({
  invalid_request: true,
  access_denied: true,
  rate_limited: true,
  upstream_rejected: true,
  upstream_invalid_response: true,
  upstream_unavailable: true,
  connector_misconfigured: true,
  internal_error: true,
} satisfies Record<ErrorCode, true>) as readonly ErrorCode[];

/**
 * The contract's codes, plus three for failures that never reach the vendor or never get a usable answer from it:
 * - `credentials_unavailable`: the AWS credential chain found nothing to sign with;
 * - `vendor_unreachable`: the request failed or timed out before an answer arrived;
 * - `vendor_invalid_response`: an answer that is neither a token nor an error body.
 */
export type TokenVendorErrorCode =
  | ErrorCode
  | 'credentials_unavailable'
  | 'vendor_unreachable'
  | 'vendor_invalid_response';

const RETRYABLE: ReadonlySet<TokenVendorErrorCode> = new Set([
  'rate_limited',
  'upstream_unavailable',
  'internal_error',
  'vendor_unreachable',
]);

export interface TokenVendorErrorOptions {
  /** The HTTP status of the vendor's answer; 0 when there was none. */
  readonly status: number;
  readonly upstreamError?: string | undefined;
  readonly retryAfterSeconds?: number | undefined;
  readonly cause?: unknown;
}

/**
 * A refusal or failure of the token vendor, with the contract's stable `code`. The message is the vendor's
 * `error_description`, which never carries a secret.
 *
 * @example
 * ```ts
 * try {
 *   await client.getToken('client-credentials', 'crm');
 * } catch (error) {
 *   if (error instanceof TokenVendorError && error.code === 'upstream_rejected') {
 *     console.error(`the token server refused the grant: ${error.upstreamError}`);
 *   }
 *   throw error;
 * }
 * ```
 */
export class TokenVendorError extends Error {
  readonly code: TokenVendorErrorCode;
  /** The HTTP status of the vendor's answer (400, 403, 429, 500, 502, 503); 0 when no answer arrived. */
  readonly status: number;
  /** The token server's OAuth error code (`invalid_client`, `invalid_grant`, …), when there is one. */
  readonly upstreamError: string | undefined;
  /** From `Retry-After`: seconds after which a retry may succeed. */
  readonly retryAfterSeconds: number | undefined;

  constructor(code: TokenVendorErrorCode, message: string, options: TokenVendorErrorOptions) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TokenVendorError';
    this.code = code;
    this.status = options.status;
    this.upstreamError = options.upstreamError;
    this.retryAfterSeconds = options.retryAfterSeconds;
  }

  /** Whether the same call may succeed later without anyone changing anything. */
  get retryable(): boolean {
    return RETRYABLE.has(this.code);
  }
}

const isContractCode = (value: unknown): value is ErrorCode =>
  typeof value === 'string' && (CONTRACT_ERROR_CODES as readonly string[]).includes(value);

/**
 * API Gateway answers some requests itself, before the vendor runs (a refused signature, throttling, an
 * integration timeout), with `{ "message": … }` instead of the contract's body; the status tells what it was.
 */
function codeForStatus(status: number): TokenVendorErrorCode {
  if (status === 400) return 'invalid_request';
  if (status === 401 || status === 403) return 'access_denied';
  if (status === 429) return 'rate_limited';
  if (status === 503 || status === 504) return 'upstream_unavailable';
  if (status >= 500) return 'internal_error';
  return 'vendor_invalid_response';
}

/** Turns a non-200 answer into a {@link TokenVendorError}. */
export function errorFromResponse(status: number, body: unknown, retryAfter: string | null, now: number) {
  const fields = typeof body === 'object' && body !== null ? (body as Record<string, unknown>) : {};
  const retryAfterSeconds = parseRetryAfter(retryAfter, now);
  if (isContractCode(fields.error)) {
    return new TokenVendorError(
      fields.error,
      typeof fields.error_description === 'string' ? fields.error_description : fields.error,
      {
        status,
        upstreamError: typeof fields.upstream_error === 'string' ? fields.upstream_error : undefined,
        retryAfterSeconds,
      },
    );
  }
  const gatewayMessage = fields.message ?? fields.Message;
  return new TokenVendorError(
    codeForStatus(status),
    typeof gatewayMessage === 'string' ? gatewayMessage : `The token vendor answered HTTP ${status}.`,
    { status, retryAfterSeconds },
  );
}
