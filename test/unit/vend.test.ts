import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { CachedToken } from '../../shared/core/token-policy.ts';
import { servesFor } from '../../shared/core/token-policy.ts';
import { type Connector, parseConnector } from '../../shared/domain/connector.ts';
import { TokenMemory } from '../../shared/use-cases/token-memory.ts';
import { toVendResponse } from '../../shared/use-cases/vend-request.ts';

const NOW = Date.parse('2026-11-24T12:00:00.000Z');
const HOUR = 3600_000;

function token(overrides: Partial<CachedToken> = {}): CachedToken {
  return {
    accessToken: 'access-token-1',
    tokenType: 'Bearer',
    scope: 'read write',
    issuedAt: NOW,
    expiresAt: NOW + HOUR,
    refreshAt: NOW + 0.75 * HOUR,
    tokenRevision: 'rev-1',
    ...overrides,
  };
}

function connector(extra: Record<string, unknown> = {}): Connector {
  return parseConnector(
    { family: 'refresh-token', connectorId: 'demo' },
    JSON.stringify({
      grantType: 'refresh_token',
      tokenUrl: 'https://idp.example.com/token',
      clientId: 'client',
      clientSecret: 'secret',
      refreshToken: 'refresh-token-value',
      allowedPrincipals: ['*'],
      ...extra,
    }),
  );
}

describe('Function: servesFor', () => {
  it('serves a token with at least minTtl left', () => {
    // Act
    const serves = servesFor(token(), 60, NOW + HOUR - 60_000);

    // Assess
    expect(serves).toBe(true);
  });

  it('does not serve a token with less than minTtl left', () => {
    // Act
    const serves = servesFor(token(), 60, NOW + HOUR - 59_000);

    // Assess
    expect(serves).toBe(false);
  });

  it('counts a minTtl above half the lifetime as half of it', () => {
    // Prepare
    const shortLived = token({ expiresAt: NOW + 60_000 });

    // Act
    const atHalf = servesFor(shortLived, 3600, NOW + 30_000);
    const pastHalf = servesFor(shortLived, 3600, NOW + 30_001);

    // Assess
    expect(atHalf).toBe(true);
    expect(pastHalf).toBe(false);
  });

  it('does not serve an expired token, whatever minTtl', () => {
    // Act & Assess
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1e6 }), fc.integer({ min: 1, max: 1e7 }), (minTtl, pastExpiry) => {
        expect(servesFor(token(), minTtl, NOW + HOUR + pastExpiry)).toBe(false);
      }),
    );
  });

  it('serves a fresh token to every caller, however large its minTtl', () => {
    // Act & Assess
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1e9 }), fc.integer({ min: 2, max: 1e9 }), (minTtl, lifetimeMs) => {
        expect(servesFor(token({ expiresAt: NOW + lifetimeMs }), minTtl, NOW)).toBe(true);
      }),
    );
  });
});

describe('Function: toVendResponse', () => {
  it('answers the CONTRACT §3 body with the default header', () => {
    // Act
    const body = toVendResponse(connector().document, token(), NOW + 188_000);

    // Assess
    expect(body).toEqual({
      access_token: 'access-token-1',
      token_type: 'Bearer',
      expires_in: 3412,
      expires_at: '2026-11-24T13:00:00.000Z',
      scope: 'read write',
      header: { name: 'Authorization', value: 'Bearer access-token-1' },
    });
  });

  it('uses headerAuthKey and headerAuthValuePattern', () => {
    // Prepare
    const custom = connector({
      headerAuthKey: 'X-Api-Token',
      headerAuthValuePattern: 'Token={{access_token}};type={{token_type}}',
    });

    // Act
    const body = toVendResponse(custom.document, token(), NOW);

    // Assess
    expect(body.header).toEqual({ name: 'X-Api-Token', value: 'Token=access-token-1;type=Bearer' });
  });

  it('fills every occurrence of a placeholder', () => {
    // Prepare
    const custom = connector({ headerAuthValuePattern: '{{access_token}} {{access_token}}' });

    // Act
    const body = toVendResponse(custom.document, token(), NOW);

    // Assess
    expect(body.header.value).toBe('access-token-1 access-token-1');
  });

  it('puts the access token in the default header value exactly as issued', () => {
    // Act & Assess
    fc.assert(
      fc.property(
        fc.oneof(fc.string({ minLength: 1 }), fc.constantFrom('abc{{token_type}}def', '{{access_token}}')),
        (accessToken) => {
          const body = toVendResponse(connector().document, token({ accessToken }), NOW);
          expect(body.header.value).toBe(`Bearer ${accessToken}`);
        },
      ),
    );
  });

  it('leaves out scope when the token has none', () => {
    // Act
    const body = toVendResponse(connector().document, token({ scope: undefined }), NOW);

    // Assess
    expect(body).not.toHaveProperty('scope');
  });

  it('never reports a negative expires_in', () => {
    // Act
    const body = toVendResponse(connector().document, token(), NOW + 2 * HOUR);

    // Assess
    expect(body.expires_in).toBe(0);
  });

  it('rounds expires_in down to whole seconds', () => {
    // Act
    const body = toVendResponse(connector().document, token(), NOW + 999);

    // Assess
    expect(body.expires_in).toBe(3599);
  });

  it('never returns a refresh token', () => {
    // Act
    const body = toVendResponse(connector().document, token(), NOW);

    // Assess
    expect(Object.keys(body).sort()).toEqual([
      'access_token',
      'expires_at',
      'expires_in',
      'header',
      'scope',
      'token_type',
    ]);
    expect(JSON.stringify(body)).not.toContain('refresh-token-value');
  });
});

describe('Class: TokenMemory', () => {
  describe('Method: get', () => {
    it('returns a token stored within the staleness bound', () => {
      // Prepare
      const memory = new TokenMemory();
      memory.set('k', token(), NOW);

      // Act
      const remembered = memory.get('k', NOW + 10_000, 10_000);

      // Assess
      expect(remembered).toEqual(token());
    });

    it('forgets a token stored longer ago than the staleness bound', () => {
      // Prepare
      const memory = new TokenMemory();
      memory.set('k', token(), NOW);

      // Act
      const remembered = memory.get('k', NOW + 10_001, 10_000);

      // Assess
      expect(remembered).toBeUndefined();
    });

    it('restarts the staleness bound when the token is stored again', () => {
      // Prepare
      const memory = new TokenMemory();
      memory.set('k', token(), NOW);
      memory.set('k', token(), NOW + 8_000);

      // Act
      const remembered = memory.get('k', NOW + 15_000, 10_000);

      // Assess
      expect(remembered).toBeDefined();
    });

    it('does not return an expired token', () => {
      // Prepare
      const memory = new TokenMemory();
      memory.set('k', token({ expiresAt: NOW + 5_000 }), NOW);

      // Act
      const atExpiry = memory.get('k', NOW + 5_000, 60_000);

      // Assess
      expect(atExpiry).toBeUndefined();
    });

    it('returns nothing for an unknown key', () => {
      // Prepare
      const memory = new TokenMemory();

      // Act
      const remembered = memory.get('unknown', NOW, 10_000);

      // Assess
      expect(remembered).toBeUndefined();
    });
  });

  describe('Method: set', () => {
    it('evicts the least recently stored entry beyond its capacity', () => {
      // Prepare
      const memory = new TokenMemory(2);
      memory.set('a', token({ accessToken: 'a' }), NOW);
      memory.set('b', token({ accessToken: 'b' }), NOW);

      // Act
      memory.set('c', token({ accessToken: 'c' }), NOW);

      // Assess
      expect(memory.get('a', NOW, 10_000)).toBeUndefined();
      expect(memory.get('b', NOW, 10_000)?.accessToken).toBe('b');
      expect(memory.get('c', NOW, 10_000)?.accessToken).toBe('c');
    });

    it('counts storing a key again as recent use', () => {
      // Prepare
      const memory = new TokenMemory(2);
      memory.set('a', token({ accessToken: 'a' }), NOW);
      memory.set('b', token({ accessToken: 'b' }), NOW);
      memory.set('a', token({ accessToken: 'a2' }), NOW);

      // Act
      memory.set('c', token({ accessToken: 'c' }), NOW);

      // Assess
      expect(memory.get('a', NOW, 10_000)?.accessToken).toBe('a2');
      expect(memory.get('b', NOW, 10_000)).toBeUndefined();
    });
  });

  describe('Method: delete', () => {
    it('forgets the token at once', () => {
      // Prepare
      const memory = new TokenMemory();
      memory.set('k', token(), NOW);

      // Act
      memory.delete('k');

      // Assess
      expect(memory.get('k', NOW, 10_000)).toBeUndefined();
    });
  });
});
