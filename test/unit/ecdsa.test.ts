import { generateKeyPairSync, sign, verify } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { derToJose, EcdsaSignatureError } from '../../shared/domain/oauth/ecdsa.ts';

/**
 * An independent DER encoder of `ECDSA-Sig-Value` (RFC 3279 §2.2.3), written from X.690: each INTEGER minimal, with a
 * 0x00 before a first byte whose high bit is set.
 */
function derOf(r: Uint8Array, s: Uint8Array): Uint8Array {
  const integer = (value: Uint8Array) => {
    let start = 0;
    while (start < value.length - 1 && value[start] === 0) start += 1;
    const digits = [...value.subarray(start)];
    if ((digits[0] ?? 0) >= 0x80) digits.unshift(0);
    return [0x02, digits.length, ...digits];
  };
  const body = [...integer(r), ...integer(s)];
  return Uint8Array.from([0x30, body.length, ...body]);
}

const part = fc.uint8Array({ minLength: 32, maxLength: 32 });
/** Parts with many leading zeros and set high bits, where encoders go wrong. */
const edgyPart = fc.oneof(
  part,
  fc
    .integer({ min: 0, max: 31 })
    .chain((zeros) =>
      fc
        .uint8Array({ minLength: 32 - zeros, maxLength: 32 - zeros })
        .map((rest) => Uint8Array.from([...new Uint8Array(zeros), ...rest])),
    ),
  part.map((bytes) => Uint8Array.from([(bytes[0] ?? 0) | 0x80, ...bytes.subarray(1)])),
);

describe('Function: derToJose', () => {
  it('gives r || s, each left-padded to 32 bytes, for any r and s', () => {
    fc.assert(
      fc.property(edgyPart, edgyPart, (r, s) => {
        // Act
        const jose = derToJose(derOf(r, s));

        // Assess
        expect(Buffer.from(jose).toString('hex')).toBe(Buffer.from([...r, ...s]).toString('hex'));
      }),
      { numRuns: 1000 },
    );
  });

  it('turns real P-256 DER signatures into ones that verify in the IEEE P1363 form JOSE uses', () => {
    // Prepare
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });

    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (message) => {
        // Act
        const der = sign('sha256', message, { key: privateKey, dsaEncoding: 'der' });
        const jose = derToJose(der);

        // Assess
        expect(jose.length).toBe(64);
        expect(verify('sha256', message, { key: publicKey, dsaEncoding: 'ieee-p1363' }, jose)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('refuses anything but one SEQUENCE of two positive INTEGERs that fit the curve, and only that way', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), (bytes) => {
        // Act
        let outcome: unknown;
        try {
          outcome = derToJose(bytes);
        } catch (error) {
          outcome = error;
        }

        // Assess: never another exception, never a wrong-length answer.
        if (outcome instanceof Uint8Array) expect(outcome.length).toBe(64);
        else expect(outcome).toBeInstanceOf(EcdsaSignatureError);
      }),
      { numRuns: 2000 },
    );
  });

  it.each([
    ['an empty input', []],
    ['a SEQUENCE whose length overruns', [0x30, 0x08, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01]],
    ['trailing bytes', [0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x00]],
    ['a negative INTEGER', [0x30, 0x06, 0x02, 0x01, 0x81, 0x02, 0x01, 0x01]],
    ['a BIT STRING for r', [0x30, 0x06, 0x03, 0x01, 0x01, 0x02, 0x01, 0x01]],
    ['an r of 33 significant bytes', [0x30, 0x26, 0x02, 0x21, ...new Array(33).fill(0x01), 0x02, 0x01, 0x01]],
  ])('refuses %s', (_name, bytes) => {
    // Act & Assess
    expect(() => derToJose(Uint8Array.from(bytes))).toThrow(EcdsaSignatureError);
  });
});
