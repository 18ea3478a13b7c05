import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { applyClientAuth, basicAuthorization, formUrlEncode } from '../../shared/domain/oauth/client-auth.ts';

/** What a server does with the header (RFC 6749 §2.3.1): base64-decode, split at the first ":", form-urldecode. */
function decodeBasic(header: string): { clientId: string; clientSecret: string } {
  expect(header.startsWith('Basic ')).toBe(true);
  const pair = Buffer.from(header.slice('Basic '.length), 'base64').toString('utf8');
  const separator = pair.indexOf(':');
  expect(separator).toBeGreaterThanOrEqual(0);
  const formDecode = (text: string) => decodeURIComponent(text.replaceAll('+', ' '));
  return { clientId: formDecode(pair.slice(0, separator)), clientSecret: formDecode(pair.slice(separator + 1)) };
}

describe('Function: basicAuthorization', () => {
  it('gives the header of the RFC 6749 §2.3.1 example', () => {
    // Act
    const header = basicAuthorization({ clientId: 's6BhdRkqt3', clientSecret: '7Fjfp0ZBr1KtDRbnfVdmIw' });

    // Assess
    expect(header).toBe('Basic czZCaGRSa3F0Mzo3RmpmcDBaQnIxS3REUmJuZlZkbUl3');
  });

  it('form-urlencodes ": + / % space" and non-ASCII before base64', () => {
    // Act
    const header = basicAuthorization({ clientId: 'a:b c+d/e%f', clientSecret: 'pässwörd ✓' });

    // Assess
    // base64("a%3Ab+c%2Bd%2Fe%25f:p%C3%A4ssw%C3%B6rd+%E2%9C%93"), computed independently.
    expect(header).toBe('Basic YSUzQWIrYyUyQmQlMkZlJTI1ZjpwJUMzJUE0c3N3JUMzJUI2cmQrJUUyJTlDJTkz');
    expect(Buffer.from(header.slice(6), 'base64').toString('utf8')).toBe(
      'a%3Ab+c%2Bd%2Fe%25f:p%C3%A4ssw%C3%B6rd+%E2%9C%93',
    );
  });

  it('sends an empty secret for a client without one', () => {
    // Act
    const header = basicAuthorization({ clientId: 'public' });

    // Assess
    expect(decodeBasic(header)).toEqual({ clientId: 'public', clientSecret: '' });
  });

  it('round-trips any client ID and secret through a server-side decode', () => {
    // Prepare
    const special = fc.constantFrom(
      ':',
      '+',
      '/',
      '%',
      ' ',
      '&',
      '=',
      '?',
      '#',
      'ä',
      'ö',
      '✓',
      '😀',
      '~',
      '*',
      '\u0000',
    );
    const text = fc
      .string({ unit: fc.oneof(special, fc.string({ unit: 'binary', minLength: 1, maxLength: 1 })), maxLength: 40 })
      .filter((value) => value.isWellFormed());

    // Act & Assess
    fc.assert(
      fc.property(text, text, (clientId, clientSecret) => {
        const header = basicAuthorization({ clientId, clientSecret });
        expect(header).toMatch(/^Basic [A-Za-z0-9+/]*={0,2}$/);
        expect(decodeBasic(header)).toEqual({ clientId, clientSecret });
      }),
      { numRuns: 500 },
    );
  });
});

describe('Function: formUrlEncode', () => {
  it('encodes space as "+" and reserved characters as percent escapes', () => {
    // Act
    const encoded = formUrlEncode('a b+c:d/e%f&g=h');

    // Assess
    expect(encoded).toBe('a+b%2Bc%3Ad%2Fe%25f%26g%3Dh');
  });
});

describe('Function: applyClientAuth', () => {
  const credentials = { clientId: 'the-client', clientSecret: 'the-secret' };

  it('basic: puts the credentials in the Authorization header only', () => {
    // Prepare
    const headers: Record<string, string> = {};
    const form = new URLSearchParams({ grant_type: 'client_credentials' });

    // Act
    applyClientAuth('basic', credentials, headers, form);

    // Assess
    expect(decodeBasic(headers.authorization ?? '')).toEqual(credentials);
    expect(form.has('client_id')).toBe(false);
    expect(form.has('client_secret')).toBe(false);
  });

  it('body: puts client_id and client_secret in the form only', () => {
    // Prepare
    const headers: Record<string, string> = {};
    const form = new URLSearchParams({ grant_type: 'client_credentials' });

    // Act
    applyClientAuth('body', credentials, headers, form);

    // Assess
    expect(headers.authorization).toBeUndefined();
    expect(form.get('client_id')).toBe('the-client');
    expect(form.get('client_secret')).toBe('the-secret');
  });

  it('none: sends only client_id, for a public client', () => {
    // Prepare
    const headers: Record<string, string> = {};
    const form = new URLSearchParams({ grant_type: 'client_credentials' });

    // Act
    applyClientAuth('none', { clientId: 'public-client' }, headers, form);

    // Assess
    expect(headers.authorization).toBeUndefined();
    expect(form.get('client_id')).toBe('public-client');
    expect(form.has('client_secret')).toBe(false);
  });
});
