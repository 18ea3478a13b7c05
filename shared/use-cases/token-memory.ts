import { LruCache } from '../core/lru.ts';
import { type CachedToken, isExpired } from '../core/token-policy.ts';

/**
 * Tokens this process has seen, served without a table read for at most `stalenessMs` after they were last read
 * from or written to the table: the bound on how long a token discarded elsewhere (a forced refresh in another
 * container) can still be handed out here. Tokens never change in place, so that is the only staleness.
 */
export class TokenMemory {
  readonly #entries: LruCache<string, { token: CachedToken; seenAt: number }>;

  constructor(maxEntries = 1000) {
    this.#entries = new LruCache(maxEntries);
  }

  get(key: string, now: number, stalenessMs: number): CachedToken | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined || now - entry.seenAt > stalenessMs || isExpired(entry.token, now)) return undefined;
    return entry.token;
  }

  set(key: string, token: CachedToken, now: number): void {
    this.#entries.set(key, { token, seenAt: now });
  }

  /** The token held for `key` whatever its staleness, unless expired: the last resort when the table is down. */
  peek(key: string, now: number): CachedToken | undefined {
    const entry = this.#entries.peek(key);
    return entry === undefined || isExpired(entry.token, now) ? undefined : entry.token;
  }

  delete(key: string): void {
    this.#entries.delete(key);
  }
}
