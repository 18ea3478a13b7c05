import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { CachedToken } from '../../shared/core/token-policy.ts';
import {
  REFRESH_MARGIN_CAP_MS,
  REFRESH_MARGIN_SHARE,
  refreshAtFor,
  servesFor,
} from '../../shared/core/token-policy.ts';

const NOW = Date.parse('2026-11-24T12:00:00.000Z');
const MIN_TTL_MS = 60_000;

/** The last instant a caller with the default minTtl is still served (CONTRACT §3: minTtl capped at half). */
const servableUntil = (issuedAt: number, expiresAt: number, minTtlMs: number) =>
  expiresAt - Math.min(minTtlMs, (expiresAt - issuedAt) / 2);

describe('Function: refreshAtFor', () => {
  it('refreshes an hour-long token the capped margin before its servable window ends, with the lowest jitter', () => {
    // Act
    const refreshAt = refreshAtFor(NOW, NOW + 3600_000, MIN_TTL_MS, () => 0);

    // Assess
    expect(refreshAt).toBe(NOW + 3540_000 - REFRESH_MARGIN_CAP_MS);
  });

  it('keeps back at most one and a half margins with the highest jitter', () => {
    // Act
    const refreshAt = refreshAtFor(NOW, NOW + 3600_000, MIN_TTL_MS, () => 0.999_999);

    // Assess
    expect(refreshAt).toBeGreaterThanOrEqual(NOW + 3540_000 - 1.5 * REFRESH_MARGIN_CAP_MS);
    expect(refreshAt).toBeLessThan(NOW + 3540_000 - 1.49 * REFRESH_MARGIN_CAP_MS);
  });

  it('keeps back a share of the window, never more than the cap, for any lifetime, minTtl and jitter', () => {
    // Act & Assess
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2e12 }),
        fc.integer({ min: 1000, max: 365 * 24 * 3600_000 }),
        fc.integer({ min: 0, max: 24 * 3600_000 }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (issuedAt, lifetimeMs, minTtlMs, jitter) => {
          const expiresAt = issuedAt + lifetimeMs;
          const until = servableUntil(issuedAt, expiresAt, minTtlMs);
          const margin = Math.min((until - issuedAt) * REFRESH_MARGIN_SHARE, REFRESH_MARGIN_CAP_MS);
          const refreshAt = refreshAtFor(issuedAt, expiresAt, minTtlMs, () => jitter);
          expect(refreshAt).toBeGreaterThanOrEqual(Math.floor(until - 1.5 * margin));
          expect(refreshAt).toBeLessThanOrEqual(until - margin);
        },
      ),
    );
  });

  it('keeps back at least three fetches of a slow server, at most half the window', () => {
    // Act: a 6 s token serves default callers for 3 s; its fetch took 200 ms, then 10 s.
    const slow = refreshAtFor(NOW, NOW + 6_000, MIN_TTL_MS, () => 0, { fetchMs: 200 });
    const hopeless = refreshAtFor(NOW, NOW + 6_000, MIN_TTL_MS, () => 0, { fetchMs: 10_000 });
    const fast = refreshAtFor(NOW, NOW + 6_000, MIN_TTL_MS, () => 0, { fetchMs: 5 });

    // Assess
    expect(slow).toBe(NOW + 3_000 - 600);
    expect(hopeless).toBe(NOW + 3_000 - 1_500);
    expect(fast).toBe(NOW + 3_000 - 3_000 * REFRESH_MARGIN_SHARE);
  });

  it('is never after the point where the token stops serving default-minTtl callers', () => {
    // Act & Assess
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 365 * 24 * 3600 }),
        fc.integer({ min: 0, max: 24 * 3600 }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (lifetimeSeconds, minTtlSeconds, jitter) => {
          const expiresAt = NOW + lifetimeSeconds * 1000;
          const refreshAt = refreshAtFor(NOW, expiresAt, minTtlSeconds * 1000, () => jitter);
          const cached: CachedToken = {
            accessToken: 'at',
            tokenType: 'Bearer',
            scope: undefined,
            issuedAt: NOW,
            expiresAt,
            refreshAt,
            tokenRevision: 'rev',
          };
          expect(servesFor(cached, minTtlSeconds, refreshAt)).toBe(true);
        },
      ),
    );
  });

  it('spreads refresh points with the jitter', () => {
    // Act
    const early = refreshAtFor(NOW, NOW + 3600_000, MIN_TTL_MS, () => 0.1);
    const late = refreshAtFor(NOW, NOW + 3600_000, MIN_TTL_MS, () => 0.9);

    // Assess
    expect(early).toBeGreaterThan(late);
  });
});
