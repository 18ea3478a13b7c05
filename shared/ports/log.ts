/**
 * The logging the domain needs; Powertools' Logger satisfies it. Domain code logs identifiers and codes only,
 * never a credential or token value.
 */
export interface Log {
  debug(message: string, ...extra: Record<string, unknown>[]): void;
  info(message: string, ...extra: Record<string, unknown>[]): void;
  warn(message: string, ...extra: Record<string, unknown>[]): void;
  error(message: string, ...extra: Record<string, unknown>[]): void;
}

/** Fields that describe an error for a log line: its name, code and message, which never carry a secret. */
export function errorFields(error: unknown): Record<string, unknown> {
  if (!(error instanceof Error)) return { errorName: typeof error };
  const code = 'code' in error && typeof error.code === 'string' ? error.code : undefined;
  return { errorName: error.name, errorCode: code, errorMessage: error.message };
}
