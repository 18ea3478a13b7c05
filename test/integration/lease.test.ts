import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CachedToken } from '../../shared/core/token-policy.ts';
import type { VendProfile } from '../../shared/domain/vend-profile.ts';
import type { Lease, LeaseAttempt } from '../../shared/ports/token-table.ts';
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

const PROFILE: VendProfile = {
  revision: 'd1',
  tokenRevision: 'r1',
  grantType: 'client_credentials',
  allowedPrincipals: [],
};

/** The lease an attempt got, if it got one. */
const leaseOf = (attempt: LeaseAttempt): Lease | undefined => ('lease' in attempt ? attempt.lease : undefined);

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
    expect(leaseOf(first)).toMatchObject({ owner: 'a', fence: 1 });
    expect(leaseOf(second)).toBeUndefined();
    // The loser learns who holds it and until when, so it can wait for exactly that long.
    expect(second).toEqual({ heldBy: { owner: 'a', until: now + 10_000 } });
  });

  it('treats an expired lease as free although nothing deleted it, with a higher fence', async () => {
    // Prepare
    const now = Date.now();
    const crashed = leaseOf(await harness.store.acquireLease('c/two', 'crashed', now, 1_000));

    // Act
    const takeover = await harness.store.acquireLease('c/two', 'next', now + 1_001, 10_000);

    // Assess
    expect(crashed?.fence).toBe(1);
    expect(leaseOf(takeover)).toMatchObject({ owner: 'next', fence: 2 });
  });

  it('refuses a write from a holder whose lease was taken over once the newer holder wrote', async () => {
    // Prepare
    const now = Date.now();
    const old = leaseOf(await harness.store.acquireLease('c/three', 'old', now, 1_000));
    const current = leaseOf(await harness.store.acquireLease('c/three', 'new', now + 2_000, 10_000));

    // Act
    const newer = await harness.store.putToken('c/three#', token('from-new', now), current?.fence ?? 0, PROFILE);
    const stale = await harness.store.putToken('c/three#', token('from-old', now), old?.fence ?? 0, PROFILE);

    // Assess
    expect([newer, stale]).toEqual([true, false]);
    expect((await harness.store.getToken('c/three#', now))?.accessToken).toBe('from-new');
  });

  it('completes an exchange only for the current holder, storing refresh and access token together', async () => {
    // Prepare
    const now = Date.now();
    const old = leaseOf(await harness.store.acquireLease('c/five', 'old', now, 1_000));
    const current = leaseOf(await harness.store.acquireLease('c/five', 'new', now + 2_000, 10_000));
    const outcome = (refreshToken: string, accessToken: string) => ({
      tokenKey: 'c/five#',
      authMethod: 'basic' as const,
      authRevision: 'r1',
      chain: { refreshToken, held: [refreshToken] },
      head: { tokenKey: 'c/five#', token: token(accessToken, now) },
    });

    // Act
    const stale = await harness.store.completeExchange('c/five', old as Lease, outcome('rt-old', 'at-old'));
    const newer = await harness.store.completeExchange('c/five', current as Lease, outcome('rt-new', 'at-new'));
    const again = await harness.store.completeExchange('c/five', old as Lease, outcome('rt-old-2', 'at-old-2'));
    const state = await harness.store.getState('c/five');

    // Assess
    expect([stale, newer, again]).toEqual([false, true, false]);
    expect(state.chain?.refreshToken).toBe('rt-new');
    expect(state.head?.token.accessToken).toBe('at-new');
    // Completing released the lease: the next caller takes it at once.
    expect(leaseOf(await harness.store.acquireLease('c/five', 'next', now + 2_001, 10_000))).toBeDefined();
  });

  it('lets only the holder release its lease', async () => {
    // Prepare
    const now = Date.now();
    const held = leaseOf(await harness.store.acquireLease('c/four', 'holder', now, 10_000));

    // Act
    await harness.store.releaseLease('c/four', { owner: 'intruder', fence: held?.fence ?? 0, until: 0 });
    const whileHeld = await harness.store.acquireLease('c/four', 'other', now + 1, 10_000);
    if (held !== undefined) await harness.store.releaseLease('c/four', held);
    const afterRelease = await harness.store.acquireLease('c/four', 'other', now + 2, 10_000);

    // Assess
    expect(leaseOf(whileHeld)).toBeUndefined();
    expect(leaseOf(afterRelease)).toMatchObject({ owner: 'other', fence: 2 });
  });
});
