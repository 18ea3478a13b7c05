/**
 * ECDSA signatures in the two forms that meet here: KMS (like OpenSSL) gives the DER `ECDSA-Sig-Value`
 * (RFC 3279 §2.2.3: SEQUENCE { r INTEGER, s INTEGER }); a JWS carries `r || s`, each left-padded to the curve's
 * size (RFC 7518 §3.4).
 */

/** Bytes of r and of s for P-256 (ES256). */
export const P256_PART_BYTES = 32;

export class EcdsaSignatureError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EcdsaSignatureError';
  }
}

/** One DER INTEGER at `offset` (short-form length: a P-256 or P-384 part never needs the long form). */
function readInteger(der: Uint8Array, offset: number): { value: Uint8Array; next: number } {
  if (der[offset] !== 0x02) throw new EcdsaSignatureError('expected an INTEGER');
  const length = der[offset + 1];
  if (length === undefined || length === 0 || length > 0x7f) throw new EcdsaSignatureError('bad INTEGER length');
  const start = offset + 2;
  const end = start + length;
  if (end > der.length) throw new EcdsaSignatureError('INTEGER runs past the end');
  const value = der.subarray(start, end);
  // r and s are positive: a set high bit would make the INTEGER negative.
  if ((value[0] ?? 0) & 0x80) throw new EcdsaSignatureError('negative INTEGER');
  return { value, next: end };
}

/** `value` without its leading zero bytes, left-padded to `size` bytes. */
function fixedWidth(value: Uint8Array, size: number): Uint8Array {
  let start = 0;
  while (start < value.length - 1 && value[start] === 0) start += 1;
  const digits = value.subarray(start);
  if (digits.length > size) throw new EcdsaSignatureError('INTEGER longer than the curve allows');
  const out = new Uint8Array(size);
  out.set(digits, size - digits.length);
  return out;
}

/**
 * DER `ECDSA-Sig-Value` → JOSE `r || s` of `2 * partBytes` bytes.
 * @throws EcdsaSignatureError when `der` is not one DER SEQUENCE of two positive INTEGERs that fit the curve
 * @see https://www.rfc-editor.org/rfc/rfc7518#section-3.4
 */
export function derToJose(der: Uint8Array, partBytes = P256_PART_BYTES): Uint8Array {
  if (der[0] !== 0x30) throw new EcdsaSignatureError('expected a SEQUENCE');
  let offset = 2;
  let length = der[1] ?? 0;
  // For P-521 the SEQUENCE may need the long form (0x81 nn).
  if (length === 0x81) {
    length = der[2] ?? 0;
    offset = 3;
  } else if (length > 0x7f) {
    throw new EcdsaSignatureError('bad SEQUENCE length');
  }
  if (offset + length !== der.length) throw new EcdsaSignatureError('SEQUENCE length does not match');
  const r = readInteger(der, offset);
  const s = readInteger(der, r.next);
  if (s.next !== der.length) throw new EcdsaSignatureError('trailing bytes after s');
  const out = new Uint8Array(partBytes * 2);
  out.set(fixedWidth(r.value, partBytes), 0);
  out.set(fixedWidth(s.value, partBytes), partBytes);
  return out;
}
