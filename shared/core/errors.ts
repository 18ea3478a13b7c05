/**
 * The contract's error codes (CONTRACT §3). Every failure the vendor reports is a {@link VendorError}:
 * a stable `code`, the HTTP status it maps to, and a description that never carries a secret.
 */
export type ErrorCode =
  | 'invalid_request'
  | 'access_denied'
  | 'rate_limited'
  | 'upstream_rejected'
  | 'upstream_invalid_response'
  | 'upstream_unavailable'
  | 'connector_misconfigured'
  | 'internal_error';

const STATUS: Record<ErrorCode, number> = {
  invalid_request: 400,
  access_denied: 403,
  rate_limited: 429,
  upstream_rejected: 502,
  upstream_invalid_response: 502,
  upstream_unavailable: 503,
  connector_misconfigured: 500,
  internal_error: 500,
};

export interface VendorErrorOptions {
  cause?: unknown;
  /** The token server's OAuth error code (RFC 6749 §5.2), when there is one. */
  upstreamError?: string;
  /** Seconds after which a retry may succeed; sent as `Retry-After`. */
  retryAfterSeconds?: number;
  /** The token server's HTTP status, when it answered. */
  upstreamStatus?: number;
}

export class VendorError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly upstreamError: string | undefined;
  readonly retryAfterSeconds: number | undefined;
  readonly upstreamStatus: number | undefined;

  constructor(code: ErrorCode, description: string, options: VendorErrorOptions = {}) {
    super(description, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'VendorError';
    this.code = code;
    this.status = STATUS[code];
    this.upstreamError = options.upstreamError;
    this.retryAfterSeconds = options.retryAfterSeconds;
    this.upstreamStatus = options.upstreamStatus;
  }
}

export const invalidRequest = (description: string): VendorError => new VendorError('invalid_request', description);

/** Not allowed and does not exist are deliberately the same answer (CONTRACT §3). */
export const accessDenied = (): VendorError =>
  new VendorError('access_denied', 'The caller may not vend this connector, or it does not exist.');

export const misconfigured = (field: string, problem: string): VendorError =>
  new VendorError('connector_misconfigured', `Connector document field "${field}": ${problem}.`);

export const upstreamUnavailable = (description: string, cause?: unknown): VendorError =>
  new VendorError('upstream_unavailable', description, { cause });

/** The body of an error answer (CONTRACT §3). */
export interface ErrorBody {
  error: ErrorCode;
  error_description: string;
  upstream_error?: string;
}

export function toErrorBody(error: VendorError): ErrorBody {
  return {
    error: error.code,
    error_description: error.message,
    ...(error.upstreamError === undefined ? {} : { upstream_error: error.upstreamError }),
  };
}

/** Fields that describe an error for a log line: its name, code and message, which never carry a secret. */
export function errorFields(error: unknown): Record<string, unknown> {
  if (!(error instanceof Error)) return { errorName: typeof error };
  if (error instanceof SyntaxError) {
    // V8's JSON errors quote the input, which may be a connector document with its secrets: the position only.
    const position = /position (\d+)/.exec(error.message)?.[1];
    return {
      errorName: error.name,
      errorMessage: `invalid JSON${position === undefined ? '' : ` at position ${position}`}`,
    };
  }
  const code = 'code' in error && typeof error.code === 'string' ? error.code : undefined;
  return { errorName: error.name, errorCode: code, errorMessage: error.message };
}
