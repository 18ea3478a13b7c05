import { createHash, randomUUID } from 'node:crypto';
// Only what is used: esbuild keeps just these parts of jose (it declares no side effects).
import { base64url, CompactSign, type CryptoKey, importPKCS8 } from 'jose';
import { misconfigured } from '../../core/errors.ts';
import { LruCache } from '../../core/lru.ts';
import type { KmsSigner, KmsSigningAlgorithm } from '../../ports/kms-signer.ts';
import type { ConnectorDocument } from '../connector.ts';
import { derToJose } from './ecdsa.ts';

export type JwsAlgorithm = NonNullable<ConnectorDocument['signingAlgorithm']>;

/** The KMS signing algorithm that makes each JWS algorithm's signature (RFC 7518 §3.1, §3.3, §3.5). */
const KMS_ALGORITHMS: Readonly<Record<JwsAlgorithm, KmsSigningAlgorithm>> = {
  RS256: 'RSASSA_PKCS1_V1_5_SHA_256',
  PS256: 'RSASSA_PSS_SHA_256',
  ES256: 'ECDSA_SHA_256',
};
/** CONTRACT §2: `signingAlgorithm` defaults to RS256. */
const DEFAULT_SIGNING_ALGORITHM: JwsAlgorithm = 'RS256';
/**
 * The grant assertion's lifetime: long enough for clock skew, short enough to be useless soon if it leaks, and under
 * Salesforce's limit (it refuses an `exp` more than 3 minutes ahead; Google allows an hour).
 */
export const ASSERTION_LIFETIME_SECONDS = 120;
/** A client assertion authenticates one request (RFC 7523 §3: "a short time period"). */
export const CLIENT_ASSERTION_LIFETIME_SECONDS = 60;
/** KMS signs a RAW message of at most 4096 bytes. */
const KMS_MAX_MESSAGE_BYTES = 4096;

/** What signing needs besides the document: KMS (for `kmsKeyId`), the time, and when to give up. */
export interface SigningDeps {
  readonly kms?: KmsSigner | undefined;
  readonly now: number;
  readonly signal?: AbortSignal | undefined;
}

export type Claims = Readonly<Record<string, unknown>>;

/** Imported private keys by fingerprint and algorithm: importing a PEM costs more than signing with it. */
const imported = new LruCache<string, CryptoKey>(64);

async function importPem(pem: string, algorithm: JwsAlgorithm): Promise<CryptoKey> {
  const cacheKey = `${algorithm}:${createHash('sha256').update(pem).digest('base64url')}`;
  const cached = imported.get(cacheKey);
  if (cached !== undefined) return cached;
  let key: CryptoKey;
  try {
    key = await importPKCS8(pem, algorithm);
  } catch (error) {
    // jose's messages name the problem, never the key. A PEM that is not PKCS#8 fails as a TypeError; one of
    // another type than the algorithm needs (RSA for ES256) fails as a DataError or as not supported.
    if (error instanceof TypeError) throw misconfigured('signingKey.privateKeyPem', 'is not a PKCS#8 private key');
    throw misconfigured('signingAlgorithm', 'does not fit the key in signingKey');
  }
  imported.set(cacheKey, key);
  return key;
}

async function signInProcess(pem: string, header: Claims, payload: Uint8Array, algorithm: JwsAlgorithm) {
  const key = await importPem(pem, algorithm);
  try {
    return await new CompactSign(payload).setProtectedHeader({ ...header, alg: algorithm }).sign(key);
  } catch {
    // An RSA key under 2048 bits, a curve other than P-256: jose refuses to sign with a key unfit for the algorithm.
    throw misconfigured('signingAlgorithm', 'does not fit the key in signingKey');
  }
}

/**
 * The JWS Signing Input is built with jose's base64url, the signature comes from KMS (`MessageType: RAW`), and an
 * ECDSA signature is turned from DER into JOSE's `r || s`.
 * @see https://www.rfc-editor.org/rfc/rfc7515#section-5.1
 */
async function signWithKms(deps: SigningDeps, keyId: string, header: Claims, payload: Uint8Array, alg: JwsAlgorithm) {
  if (deps.kms === undefined) throw misconfigured('signingKey.kmsKeyId', 'needs KMS, which is not available here');
  const encoder = new TextEncoder();
  const signingInput = `${base64url.encode(JSON.stringify({ ...header, alg }))}.${base64url.encode(payload)}`;
  const message = encoder.encode(signingInput);
  if (message.length > KMS_MAX_MESSAGE_BYTES) {
    throw misconfigured(
      'assertionClaims',
      `make the assertion longer than the ${KMS_MAX_MESSAGE_BYTES} bytes KMS signs`,
    );
  }
  const signature = await deps.kms.sign({
    keyId,
    algorithm: KMS_ALGORITHMS[alg],
    message,
    ...(deps.signal === undefined ? {} : { signal: deps.signal }),
  });
  let jose: Uint8Array;
  try {
    jose = alg === 'ES256' ? derToJose(signature) : signature;
  } catch {
    // A DER signature whose parts do not fit P-256: the KMS key is on another curve.
    throw misconfigured('signingAlgorithm', 'does not fit the KMS key in signingKey');
  }
  return `${signingInput}.${base64url.encode(jose)}`;
}

/**
 * Signs `claims` as a compact JWS (a JWT, `typ: JWT`) with the connector's `signingKey` and `signingAlgorithm`.
 * @throws VendorError `connector_misconfigured` naming the field of a key that cannot sign; `upstream_unavailable`
 *   when KMS is throttled or unreachable
 */
export async function signJwt(deps: SigningDeps, document: ConnectorDocument, claims: Claims): Promise<string> {
  const key = document.signingKey;
  if (key === undefined) throw misconfigured('signingKey', 'is required');
  const algorithm = document.signingAlgorithm ?? DEFAULT_SIGNING_ALGORITHM;
  const header = { typ: 'JWT', ...(key.kid === undefined ? {} : { kid: key.kid }) };
  const payload = new TextEncoder().encode(JSON.stringify(claims));
  if (key.kmsKeyId !== undefined) return signWithKms(deps, key.kmsKeyId, header, payload, algorithm);
  if (key.privateKeyPem !== undefined) return signInProcess(key.privateKeyPem, header, payload, algorithm);
  throw misconfigured('signingKey', 'must hold exactly one of kmsKeyId and privateKeyPem');
}

const seconds = (epochMs: number) => Math.floor(epochMs / 1000);

/**
 * The claims of the JWT bearer grant's assertion: `iss`, `sub` (default the issuer), `aud` (default the token URL),
 * `iat`, `exp`, a unique `jti`, and the connector's `assertionClaims`.
 * @see https://www.rfc-editor.org/rfc/rfc7523#section-3
 */
export function grantAssertionClaims(document: ConnectorDocument, now: number): Claims {
  const issuer = document.assertionIssuer ?? document.clientId;
  return {
    ...document.assertionClaims,
    iss: issuer,
    sub: document.assertionSubject ?? issuer,
    aud: document.assertionAudience ?? document.tokenUrl,
    iat: seconds(now),
    exp: seconds(now) + ASSERTION_LIFETIME_SECONDS,
    jti: randomUUID(),
  };
}

/**
 * The claims of a `private_key_jwt` client assertion: `iss` and `sub` the client ID, `aud` the token URL.
 * @see https://www.rfc-editor.org/rfc/rfc7523#section-3
 * @see https://openid.net/specs/openid-connect-core-1_0.html#ClientAuthentication
 */
export function clientAssertionClaims(document: ConnectorDocument, now: number): Claims {
  return {
    iss: document.clientId,
    sub: document.clientId,
    aud: document.tokenUrl,
    iat: seconds(now),
    exp: seconds(now) + CLIENT_ASSERTION_LIFETIME_SECONDS,
    jti: randomUUID(),
  };
}
