import * as z from 'zod/mini';
import {
  DEFAULT_FORCED_REFRESH_SECONDS,
  DEFAULT_SECRET_PREFIX,
  DEFAULT_TABLE_NAME,
  SECRET_PREFIX,
} from '../../shared/core/settings.ts';

const seconds = (fallback: number) =>
  z.pipe(
    z._default(z.string().check(z.regex(/^\d+(\.\d+)?$/, 'must be a number of seconds')), String(fallback)),
    z.transform(Number),
  );
const name = z.string().check(z.minLength(1, 'must not be empty'));
const flag = <const T extends readonly [string, ...string[]]>(values: T) =>
  z.enum(values, `must be one of ${values.join(', ')}`);

const configSchema = z.object({
  TOKEN_VENDOR_TABLE: z._default(name, DEFAULT_TABLE_NAME),
  /** Set: connectors come from this folder and http loopback token URLs are allowed (local mode). */
  TOKEN_VENDOR_CONNECTORS_DIR: z.optional(name),
  TOKEN_VENDOR_SECRET_PREFIX: z._default(
    z.string().check(z.regex(SECRET_PREFIX, 'must be /-separated segments of letters, digits and _+=.@-')),
    DEFAULT_SECRET_PREFIX,
  ),
  TOKEN_VENDOR_FORCED_REFRESH_SECONDS: seconds(DEFAULT_FORCED_REFRESH_SECONDS),
  /** AWS: allow token URLs in private ranges (a token server inside the VPC). Local mode always may. */
  TOKEN_VENDOR_ALLOW_PRIVATE_NETWORKS: z._default(flag(['true', 'false']), 'false'),
  TOKEN_VENDOR_MEMORY_STALENESS_SECONDS: seconds(10),
  TOKEN_VENDOR_SECRET_MAX_AGE_SECONDS: seconds(30),
  TOKEN_VENDOR_LEASE_SECONDS: seconds(15),
  TOKEN_VENDOR_WAIT_SECONDS: seconds(20),
  TOKEN_VENDOR_ATTEMPT_TIMEOUT_SECONDS: seconds(5),
  TOKEN_VENDOR_FETCH_DEADLINE_SECONDS: seconds(12),
  TOKEN_VENDOR_MAX_ATTEMPTS: z.pipe(
    z._default(z.string().check(z.regex(/^[1-9]$/, 'must be a whole number from 1 to 9')), '3'),
    z.transform(Number),
  ),
  TOKEN_VENDOR_DEFAULT_MIN_TTL_SECONDS: seconds(60),
  /** The scheduled run starts no connector after this long (keep it well under the function timeout). */
  TOKEN_VENDOR_ROTATE_BUDGET_SECONDS: seconds(60),
  /** Lambda sets AWS_LAMBDA_FUNCTION_NAME; there no work may run on after a response (see vend.ts). */
  AWS_LAMBDA_FUNCTION_NAME: z.optional(z.string()),
  /** The function that refreshes a due token when asked asynchronously (the construct names the rotate function). */
  TOKEN_VENDOR_REFRESH_FUNCTION: z.optional(name),
  /** The KMS key that seals token values in the table (the construct creates it). */
  TOKEN_VENDOR_TOKEN_KEY_ID: z.optional(name),
  TOKEN_VENDOR_REFRESH_AHEAD: z.optional(flag(['background', 'inline', 'async'])),
  /** A refresh-token connector is exercised at least this often, even when nobody vends it. */
  TOKEN_VENDOR_IDLE_REFRESH_SECONDS: seconds(24 * 3600),
  /**
   * A reconciliation syncs connectors changed this far back: its own interval plus the minutes by which Secrets
   * Manager's listing may lag a change, so no change falls between two runs.
   */
  TOKEN_VENDOR_RECONCILE_WINDOW_SECONDS: seconds(15 * 60),
  /**
   * The share of a short-lived token's servable window kept back for its refresh: more refreshes, more slack for
   * a slow token server. Long-lived tokens keep back at most 90 s whatever it is.
   */
  TOKEN_VENDOR_REFRESH_MARGIN_SHARE: z
    .pipe(
      z._default(z.string().check(z.regex(/^0?\.\d+$/, 'must be a share between 0 and 0.5')), '0.06'),
      z.transform(Number),
    )
    .check(z.refine((share) => share > 0 && share <= 0.5, 'must be a share between 0 and 0.5')),
});

export interface Config {
  readonly tableName: string;
  readonly reconcileWindowMs: number;
  readonly refreshMarginShare: number;
  readonly connectorsDir: string | undefined;
  readonly secretPrefix: string;
  readonly forcedRefreshSpacingMs: number;
  readonly allowPrivateNetworks: boolean;
  readonly memoryStalenessMs: number;
  readonly secretMaxAgeSeconds: number;
  readonly leaseMs: number;
  readonly waitMs: number;
  readonly attemptTimeoutMs: number;
  readonly fetchDeadlineMs: number;
  readonly maxAttempts: number;
  readonly defaultMinTtlSeconds: number;
  readonly rotateBudgetMs: number;
  /**
   * How a due token is refreshed ahead: `background` in a long-lived process; in Lambda `async` (handed to the
   * refresher function) when one is named, else `inline` (the one caller holding the lease waits).
   */
  readonly refreshAhead: 'background' | 'inline' | 'async';
  readonly refreshFunction: string | undefined;
  readonly tokenKeyId: string | undefined;
  readonly idleRefreshMs: number;
}

/**
 * Reads the functions' settings once, at cold start, and refuses bad ones by name.
 * @throws Error naming the first invalid variable
 */
export function loadConfig(env: Readonly<Record<string, string | undefined>>): Config {
  const result = configSchema.safeParse(env);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new Error(`Invalid setting ${String(issue?.path[0] ?? '')}: ${issue?.message ?? 'invalid'}`);
  }
  const c = result.data;
  // A live holder must never lose its lease: one fetch, retries included, ends before the lease does.
  if (c.TOKEN_VENDOR_REFRESH_AHEAD === 'async' && c.TOKEN_VENDOR_REFRESH_FUNCTION === undefined) {
    throw new Error('Invalid setting TOKEN_VENDOR_REFRESH_AHEAD: async needs TOKEN_VENDOR_REFRESH_FUNCTION');
  }
  if (c.TOKEN_VENDOR_FETCH_DEADLINE_SECONDS >= c.TOKEN_VENDOR_LEASE_SECONDS) {
    throw new Error('Invalid setting TOKEN_VENDOR_FETCH_DEADLINE_SECONDS: must be below TOKEN_VENDOR_LEASE_SECONDS');
  }
  return {
    tableName: c.TOKEN_VENDOR_TABLE,
    reconcileWindowMs: c.TOKEN_VENDOR_RECONCILE_WINDOW_SECONDS * 1000,
    refreshMarginShare: c.TOKEN_VENDOR_REFRESH_MARGIN_SHARE,
    connectorsDir: c.TOKEN_VENDOR_CONNECTORS_DIR,
    secretPrefix: c.TOKEN_VENDOR_SECRET_PREFIX,
    forcedRefreshSpacingMs: c.TOKEN_VENDOR_FORCED_REFRESH_SECONDS * 1000,
    allowPrivateNetworks: c.TOKEN_VENDOR_ALLOW_PRIVATE_NETWORKS === 'true',
    memoryStalenessMs: c.TOKEN_VENDOR_MEMORY_STALENESS_SECONDS * 1000,
    secretMaxAgeSeconds: c.TOKEN_VENDOR_SECRET_MAX_AGE_SECONDS,
    leaseMs: c.TOKEN_VENDOR_LEASE_SECONDS * 1000,
    waitMs: c.TOKEN_VENDOR_WAIT_SECONDS * 1000,
    attemptTimeoutMs: c.TOKEN_VENDOR_ATTEMPT_TIMEOUT_SECONDS * 1000,
    fetchDeadlineMs: c.TOKEN_VENDOR_FETCH_DEADLINE_SECONDS * 1000,
    maxAttempts: c.TOKEN_VENDOR_MAX_ATTEMPTS,
    defaultMinTtlSeconds: c.TOKEN_VENDOR_DEFAULT_MIN_TTL_SECONDS,
    rotateBudgetMs: c.TOKEN_VENDOR_ROTATE_BUDGET_SECONDS * 1000,
    refreshAhead:
      c.TOKEN_VENDOR_REFRESH_AHEAD ??
      (c.AWS_LAMBDA_FUNCTION_NAME === undefined
        ? 'background'
        : c.TOKEN_VENDOR_REFRESH_FUNCTION === undefined
          ? 'inline'
          : 'async'),
    refreshFunction: c.TOKEN_VENDOR_REFRESH_FUNCTION,
    tokenKeyId: c.TOKEN_VENDOR_TOKEN_KEY_ID,
    idleRefreshMs: c.TOKEN_VENDOR_IDLE_REFRESH_SECONDS * 1000,
  };
}
