import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type Caller, isAllowed, principalMatches } from '../../shared/domain/principals.ts';

const ACCOUNT = '123456789012';
const OTHER_ACCOUNT = '210987654321';

const session = (role: string, name = 'session-1', account = ACCOUNT, partition = 'aws'): Caller => ({
  arn: `arn:${partition}:sts::${account}:assumed-role/${role}/${name}`,
  accountId: account,
});
const user = (name: string, account = ACCOUNT): Caller => ({
  arn: `arn:aws:iam::${account}:user/${name}`,
  accountId: account,
});

describe('Function: principalMatches', () => {
  describe('"*"', () => {
    it.each([session('any-role'), user('alice'), session('r', 's', OTHER_ACCOUNT, 'aws-cn')])(
      'admits every caller (%j)',
      (caller) => {
        // Act
        const matches = principalMatches('*', caller);

        // Assess
        expect(matches).toBe(true);
      },
    );
  });

  describe('account ID', () => {
    it('admits a role session of the account', () => {
      // Act
      const matches = principalMatches(ACCOUNT, session('reader'));

      // Assess
      expect(matches).toBe(true);
    });

    it('admits a user of the account', () => {
      // Act
      const matches = principalMatches(ACCOUNT, user('alice'));

      // Assess
      expect(matches).toBe(true);
    });

    it('refuses a caller of another account', () => {
      // Act
      const matches = principalMatches(ACCOUNT, session('reader', 's', OTHER_ACCOUNT));

      // Assess
      expect(matches).toBe(false);
    });

    it('refuses a caller whose ARN belongs to another account than the reported accountId', () => {
      // Prepare
      const caller = { arn: `arn:aws:sts::${OTHER_ACCOUNT}:assumed-role/reader/s`, accountId: ACCOUNT };

      // Act
      const matches = principalMatches(ACCOUNT, caller);

      // Assess
      expect(matches).toBe(false);
    });
  });

  describe('role ARN', () => {
    const role = `arn:aws:iam::${ACCOUNT}:role/reader`;

    it('admits every session of the role', () => {
      // Act & Assess
      fc.assert(
        fc.property(fc.stringMatching(/^[\w+=,.@-]{2,64}$/), (sessionName) => {
          expect(principalMatches(role, session('reader', sessionName))).toBe(true);
        }),
      );
    });

    it.each([
      ['another role', session('writer')],
      ['a role whose name starts with it', session('reader-admin')],
      ['a role whose name ends with it', session('not-reader')],
      ['the same role name in another account', session('reader', 's', OTHER_ACCOUNT)],
      ['the same role in another partition', session('reader', 's', ACCOUNT, 'aws-cn')],
      ['a user with the role name', user('reader')],
      ['an empty identity', { arn: '', accountId: '' }],
    ])('refuses %s', (_name, caller) => {
      // Act
      const matches = principalMatches(role, caller);

      // Assess
      expect(matches).toBe(false);
    });

    it('admits a session of a role with a path', () => {
      // Act
      const matches = principalMatches(`arn:aws:iam::${ACCOUNT}:role/service/team/reader`, session('reader'));

      // Assess
      expect(matches).toBe(true);
    });

    it('refuses another role under a path', () => {
      // Act
      const matches = principalMatches(`arn:aws:iam::${ACCOUNT}:role/service/team/reader`, session('team'));

      // Assess
      expect(matches).toBe(false);
    });

    it('admits sessions in the matching non-default partition', () => {
      // Act
      const matches = principalMatches(
        `arn:aws-us-gov:iam::${ACCOUNT}:role/reader`,
        session('reader', 's', ACCOUNT, 'aws-us-gov'),
      );

      // Assess
      expect(matches).toBe(true);
    });

    it('refuses a standard-partition session for a GovCloud role', () => {
      // Act
      const matches = principalMatches(`arn:aws-us-gov:iam::${ACCOUNT}:role/reader`, session('reader'));

      // Assess
      expect(matches).toBe(false);
    });
  });

  describe('user ARN', () => {
    const alice = `arn:aws:iam::${ACCOUNT}:user/alice`;

    it('admits exactly that user', () => {
      // Act
      const matches = principalMatches(alice, user('alice'));

      // Assess
      expect(matches).toBe(true);
    });

    it.each([
      ['another user', user('alicia')],
      ['the same name in another account', user('alice', OTHER_ACCOUNT)],
      ['a role session named like the user', session('alice', 'alice')],
    ])('refuses %s', (_name, caller) => {
      // Act
      const matches = principalMatches(alice, caller);

      // Assess
      expect(matches).toBe(false);
    });

    it('admits a user with a path by its exact ARN', () => {
      // Prepare
      const arn = `arn:aws:iam::${ACCOUNT}:user/division/bob`;

      // Act
      const matches = principalMatches(arn, { arn, accountId: ACCOUNT });

      // Assess
      expect(matches).toBe(true);
    });
  });
});

describe('Function: isAllowed', () => {
  it('admits a caller that any entry admits', () => {
    // Act
    const allowed = isAllowed(
      [`arn:aws:iam::${ACCOUNT}:user/alice`, `arn:aws:iam::${ACCOUNT}:role/reader`],
      session('reader'),
    );

    // Assess
    expect(allowed).toBe(true);
  });

  it('refuses a caller no entry admits', () => {
    // Act
    const allowed = isAllowed([OTHER_ACCOUNT, `arn:aws:iam::${ACCOUNT}:role/writer`], session('reader'));

    // Assess
    expect(allowed).toBe(false);
  });

  it('refuses everyone for an empty list', () => {
    // Act
    const allowed = isAllowed([], session('reader'));

    // Assess
    expect(allowed).toBe(false);
  });
});
