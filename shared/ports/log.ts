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
