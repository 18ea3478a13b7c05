import { Logger } from '@aws-lambda-powertools/logger';
import { SERVICE_NAME } from '../core/settings.ts';

/** Keys whose string values are credentials or tokens wherever they appear in a log record. */
const SECRET_KEY = /secret|password|passwd|token|authorization|credential|cookie|signature/i;
/** Keys that match SECRET_KEY by name but hold no secret. */
const SAFE_KEYS = new Set(['tokenKey', 'tokenType', 'token_type', 'tokenUrl', 'tokenRevision']);

/**
 * Redaction is the logger's job, not each caller's care: any value under a secret-looking key (a string, or an
 * array or object that could hold one) is replaced, at any depth, before the record is written.
 */
export function redactSecrets(key: string, value: unknown): unknown {
  if (value === null || value === undefined || typeof value === 'number' || typeof value === 'boolean') return value;
  if (SECRET_KEY.test(key) && !SAFE_KEYS.has(key)) return '[redacted]';
  return value;
}

export function createLogger(serviceName = SERVICE_NAME): Logger {
  return new Logger({ serviceName, jsonReplacerFn: redactSecrets });
}
