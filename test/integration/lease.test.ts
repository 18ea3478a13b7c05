import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CachedToken } from '../../shared/token-store.ts';
import { type Harness, startHarness } from '../support/harness.ts';

const token = (accessToken: string, now: number): CachedToken => ({
  accessToken,
  tokenType: 'Bearer',
  scope: undefined,
  issuedAt: now,
  expiresAt: now + 3600_000,
  refreshAt: now + 2000_000,
  tokenRevision: 'r1',
});

describe('Class: DynamoDBTokenStore (lease and fencing on dynalite)', () => {
  let harness: Harness;

  beforeAll(async () => {
    harness = await startHarness();
  });
  afterAll(async () => {
    await harness.close();
  });

  it('grants a free lease once, and refuses it to others while it runs', async () => {
    // Act
    const now = Date.now();
    const first = await harness.store.acquireLease('c/one', 'a', now, 10_000);
    const second = await harness.store.acquireLease('c/one', 'b', now + 1, 10_000);

    // Assess
    expect(first).toMatchObject({ owner: 'a', fence: 1 });
    expect(second).toBeUndefined();
  });

  it('treats an expired lease as free although nothing deleted it, with a higher fence', async () => {
    // Prepare
    const now = Date.now();
    const crashed = await harness.store.acquireLease('c/two', 'crashed', now, 1_000);

    // Act
    const takeover = await harness.store.acquireLease('c/two', 'next', now + 1_001, 10_000);

    // Assess
    expect(crashed?.fence).toBe(1);
    expect(takeover).toMatchObject({ owner: 'next', fence: 2 });
  });

  it('refuses a write from a holder whose lease was taken over once the newer holder wrote', async () => {
    // Prepare
    const now = Date.now();
    const old = await harness.store.acquireLease('c/three', 'old', now, 1_000);
    const current = await harness.store.acquireLease('c/three', 'new', now + 2_000, 10_000);

    // Act
    const newer = await harness.store.putToken('c/three#', token('from-new', now), current?.fence ?? 0);
    const stale = await harness.store.putToken('c/three#', token('from-old', now), old?.fence ?? 0);
    const staleJournal = await harness.store.journalRefreshToken('c/three', old ?? { owner: 'x', fence: 0, until: 0 }, {
      refreshToken: 'rt-old',
      replaces: 'x',
    });
    const newerJournal = await harness.store.journalRefreshToken(
      'c/three',
      current ?? { owner: 'x', fence: 0, until: 0 },
      { refreshToken: 'rt-new', replaces: 'x' },
    );
    const lateStaleJournal = await harness.store.journalRefreshToken(
      'c/three',
      old ?? { owner: 'x', fence: 0, until: 0 },
      { refreshToken: 'rt-old-2', replaces: 'x' },
    );

    // Assess
    expect([newer, stale]).toEqual([true, false]);
    expect((await harness.store.getToken('c/three#', now))?.accessToken).toBe('from-new');
    expect([staleJournal, newerJournal, lateStaleJournal]).toEqual([true, true, false]);
    expect((await harness.store.getState('c/three')).journal?.refreshToken).toBe('rt-new');
  });

  it('lets only the holder release its lease', async () => {
    // Prepare
    const now = Date.now();
    const held = await harness.store.acquireLease('c/four', 'holder', now, 10_000);

    // Act
    await harness.store.releaseLease('c/four', { owner: 'intruder', fence: held?.fence ?? 0, until: 0 });
    const whileHeld = await harness.store.acquireLease('c/four', 'other', now + 1, 10_000);
    if (held !== undefined) await harness.store.releaseLease('c/four', held);
    const afterRelease = await harness.store.acquireLease('c/four', 'other', now + 2, 10_000);

    // Assess
    expect(whileHeld).toBeUndefined();
    expect(afterRelease).toMatchObject({ owner: 'other', fence: 2 });
  });
});
