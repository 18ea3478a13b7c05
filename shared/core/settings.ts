import type { ConnectorRef } from './identifiers.ts';
import { refOfKey } from './identifiers.ts';

/**
 * Configuration names and defaults, in the one place the functions, local mode, the CLI and the CDK construct read
 * them from.
 */
export const DEFAULT_TABLE_NAME = 'token-vendor-tokens';
export const DEFAULT_SECRET_PREFIX = 'token-vendor';
/**
 * A secret name prefix: characters a Secrets Manager name may hold, `/`-separated segments without a leading,
 * trailing or doubled `/` (the vendor appends `/<family>/<connectorId>`).
 */
export const SECRET_PREFIX = /^[A-Za-z0-9_+=.@-]+(\/[A-Za-z0-9_+=.@-]+)*$/;
/** Powertools' service name in logs and metrics. */
export const SERVICE_NAME = 'token-vendor';
export const DEFAULT_METRICS_NAMESPACE = 'TokenVendor';
export const DEFAULT_FORCED_REFRESH_SECONDS = 5;
/** Local mode's connectors folder, relative to where it runs. */
export const DEFAULT_CONNECTORS_DIR = 'connectors';

/** The environment variables the functions read (the construct sets them; local mode and the CLI honour them). */
export const ENV = {
  table: 'TOKEN_VENDOR_TABLE',
  secretPrefix: 'TOKEN_VENDOR_SECRET_PREFIX',
  connectorsDir: 'TOKEN_VENDOR_CONNECTORS_DIR',
  forcedRefreshSeconds: 'TOKEN_VENDOR_FORCED_REFRESH_SECONDS',
  allowPrivateNetworks: 'TOKEN_VENDOR_ALLOW_PRIVATE_NETWORKS',
  refreshFunction: 'TOKEN_VENDOR_REFRESH_FUNCTION',
  tokenKeyId: 'TOKEN_VENDOR_TOKEN_KEY_ID',
  reconcileWindowSeconds: 'TOKEN_VENDOR_RECONCILE_WINDOW_SECONDS',
  memoryStalenessSeconds: 'TOKEN_VENDOR_MEMORY_STALENESS_SECONDS',
  secretMaxAgeSeconds: 'TOKEN_VENDOR_SECRET_MAX_AGE_SECONDS',
  leaseSeconds: 'TOKEN_VENDOR_LEASE_SECONDS',
  waitSeconds: 'TOKEN_VENDOR_WAIT_SECONDS',
  attemptTimeoutSeconds: 'TOKEN_VENDOR_ATTEMPT_TIMEOUT_SECONDS',
  fetchDeadlineSeconds: 'TOKEN_VENDOR_FETCH_DEADLINE_SECONDS',
  maxAttempts: 'TOKEN_VENDOR_MAX_ATTEMPTS',
  defaultMinTtlSeconds: 'TOKEN_VENDOR_DEFAULT_MIN_TTL_SECONDS',
  idleRefreshSeconds: 'TOKEN_VENDOR_IDLE_REFRESH_SECONDS',
} as const;

/**
 * The encryption-context key naming the grant family a sealed token value belongs to (KMS conditions name it). The
 * item itself is bound inside the sealed payload, so one data key serves many items of a family.
 */
export const SEAL_CONTEXT_FAMILY = 'token-vendor:family';
/** The encryption-context key of values sealed before that (bound to their item by KMS); they still open. */
export const SEAL_CONTEXT_ITEM = 'token-vendor:item';

/** A connector's secret (CONTRACT §2): `<prefix>/<family>/<connectorId>`. */
export const secretName = (prefix: string, ref: ConnectorRef): string => `${prefix}/${ref.family}/${ref.connectorId}`;

/** The connector a secret name stands for, or undefined when the name is not a connector's under `prefix`. */
export function refFromSecretName(prefix: string, name: string): ConnectorRef | undefined {
  return name.startsWith(`${prefix}/`) ? refOfKey(name.slice(prefix.length + 1)) : undefined;
}
