import { LruCache } from '../core/lru.ts';
import { type CachedToken, isExpired } from '../core/token-policy.ts';
import type { VendProfile } from '../domain/vend-profile.ts';

interface Remembered {
  readonly token: CachedToken;
  /** The connector's profile as read with the token; absent when the token came from elsewhere (a fetch). */
  readonly profile: VendProfile | undefined;
  readonly seenAt: number;
}

/**
 * Tokens this process has seen, served without a table read for at most `stalenessMs` after they were last read
 * from or written to the table: the bound on how long a token discarded elsewhere (a forced refresh in another
 * container), or a profile changed by a sync (a principal removed), can still be acted on here. Tokens never
 * change in place, so that is the only staleness.
 */
export class TokenMemory {
  readonly #entries: LruCache<string, Remembered>;

  /** Ten thousand tokens of a few kilobytes each: tens of megabytes at most, for a connector count's worth of hits. */
  constructor(maxEntries = 10_000) {
    this.#entries = new LruCache(maxEntries);
  }

  get(key: string, now: number, stalenessMs: number): CachedToken | undefined {
    return this.#fresh(key, now, stalenessMs)?.token;
  }

  /** The token with the profile read beside it, both within `stalenessMs` of that read. */
  getWithProfile(
    key: string,
    now: number,
    stalenessMs: number,
  ): { token: CachedToken; profile: VendProfile } | undefined {
    const entry = this.#fresh(key, now, stalenessMs);
    return entry?.profile === undefined ? undefined : { token: entry.token, profile: entry.profile };
  }

  set(key: string, token: CachedToken, now: number, profile?: VendProfile): void {
    this.#entries.set(key, { token, profile, seenAt: now });
  }

  /** The token held for `key` whatever its staleness, unless expired: the last resort when the table is down. */
  peek(key: string, now: number): { token: CachedToken; profile: VendProfile | undefined } | undefined {
    const entry = this.#entries.peek(key);
    return entry === undefined || isExpired(entry.token, now) ? undefined : entry;
  }

  delete(key: string): void {
    this.#entries.delete(key);
  }

  #fresh(key: string, now: number, stalenessMs: number): Remembered | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined || now - entry.seenAt > stalenessMs || isExpired(entry.token, now)) return undefined;
    return entry;
  }
}
