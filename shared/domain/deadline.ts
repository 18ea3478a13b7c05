import { VendorError } from '../core/errors.ts';

/**
 * Waits for `work` at most `ms`: past that, rejects with `upstream_unavailable` and leaves `work` to end by its own
 * bounds (every call handed here has its own timeout, so nothing is left running for long).
 */
export function within<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(
      () => reject(new VendorError('upstream_unavailable', `${what} did not answer in time.`)),
      Math.max(0, ms),
    );
  });
  // The loser of the race may still fail later; that failure has already been answered for.
  work.catch(() => undefined);
  return Promise.race([work, expired]).finally(() => clearTimeout(timer));
}
