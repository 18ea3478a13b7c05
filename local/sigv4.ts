import {
  createHash,
  createHmac,
  createSecretKey,
  type Hash,
  type Hmac,
  type KeyObject,
  timingSafeEqual,
} from 'node:crypto';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import { LruCache } from '../shared/core/lru.ts';

/** One entry of the principals file (CONTRACT §4). */
export interface LocalPrincipal {
  readonly secretAccessKey: string;
  readonly arn: string;
}

export type Principals = Readonly<Record<string, LocalPrincipal>>;

export interface IncomingSignedRequest {
  readonly method: string;
  /** The path as sent, still percent-encoded. */
  readonly rawPath: string;
  /** The query string as sent, without "?". */
  readonly rawQuery: string;
  /** Lower-cased header names. */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

export type Verification =
  | { readonly ok: true; readonly accessKeyId: string; readonly principal: LocalPrincipal }
  | { readonly ok: false; readonly reason: string };

const AUTHORIZATION =
  /^AWS4-HMAC-SHA256 Credential=([^/,\s]+)\/(\d{8})\/([^/,\s]+)\/([^/,\s]+)\/aws4_request,\s*SignedHeaders=([a-z0-9;._-]+),\s*Signature=([0-9a-f]{64})$/;
const AMZ_DATE = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;
/** API Gateway refuses a signature dated more than 15 minutes from its clock. */
const MAX_SKEW_MS = 15 * 60 * 1000;

type SourceData = string | ArrayBuffer | ArrayBufferView;

const bytesOf = (data: SourceData): Buffer =>
  typeof data === 'string'
    ? Buffer.from(data, 'utf8')
    : ArrayBuffer.isView(data)
      ? Buffer.from(data.buffer, data.byteOffset, data.byteLength)
      : Buffer.from(data);

/**
 * HMAC keys as `KeyObject`s, one per key: Node 24 spends ~10 µs importing a Buffer key on every `createHmac`, ~1 µs
 * with a `KeyObject`. The keys are the principals' secrets and the signing keys derived from them (a few per day).
 */
const hmacKeys = new LruCache<string, KeyObject>(1000);

function hmacKey(secret: SourceData): KeyObject {
  const bytes = bytesOf(secret);
  const id = bytes.toString('base64');
  let key = hmacKeys.get(id);
  if (key === undefined) {
    key = createSecretKey(bytes);
    hmacKeys.set(id, key);
  }
  return key;
}

/** The signer's SHA-256 and HMAC-SHA-256 (`new Sha256(secret)`), on Node's native hashing with cached keys. */
class Sha256 {
  readonly #secret: SourceData | undefined;
  #hash: Hash | Hmac;

  constructor(secret?: SourceData) {
    this.#secret = secret;
    this.#hash = Sha256.#start(secret);
  }

  static #start(secret: SourceData | undefined): Hash | Hmac {
    return secret === undefined ? createHash('sha256') : createHmac('sha256', hmacKey(secret));
  }

  update(data: SourceData): void {
    this.#hash.update(bytesOf(data));
  }

  digest(): Promise<Uint8Array> {
    return Promise.resolve(this.#hash.digest());
  }

  reset(): void {
    this.#hash = Sha256.#start(this.#secret);
  }
}

/** A path segment or query component percent-decoded; undefined when its encoding is broken. */
export function decodeComponent(text: string): string | undefined {
  try {
    return decodeURIComponent(text);
  } catch {
    return undefined;
  }
}

/** Parses a raw query string into every value of every name, percent-decoded (undefined if malformed). */
export function parseQuery(rawQuery: string): Record<string, string[]> | undefined {
  const query: Record<string, string[]> = {};
  for (const part of rawQuery.split('&')) {
    if (part === '') continue;
    const separator = part.indexOf('=');
    const name = decodeComponent(separator === -1 ? part : part.slice(0, separator));
    const value = decodeComponent(separator === -1 ? '' : part.slice(separator + 1));
    if (name === undefined || value === undefined) return undefined;
    const values = query[name] ?? [];
    values.push(value);
    query[name] = values;
  }
  return query;
}

/**
 * Verifies an AWS Signature Version 4 header the way API Gateway does for `AWS_IAM` routes: the access key is
 * known, the scope is this region's `execute-api`, the date is within 15 minutes, and recomputing the signature
 * over the signed headers, path, query and body gives the same value. The recomputation is the SDK's own
 * signer, so the canonical request is AWS's, not a hand-written copy.
 */
export async function verifySigV4(
  request: IncomingSignedRequest,
  principals: Principals,
  region: string,
  now: number,
): Promise<Verification> {
  const authorization = request.headers.authorization;
  if (authorization === undefined) return { ok: false, reason: 'Missing Authentication Token' };
  const match = AUTHORIZATION.exec(authorization.trim());
  if (match === null) return { ok: false, reason: 'Malformed Authorization header' };
  const [, accessKeyId = '', scopeDate, scopeRegion, service, signedHeaderList = '', signature = ''] = match;
  const principal = principals[accessKeyId];
  if (principal === undefined) return { ok: false, reason: 'The security token included in the request is invalid' };
  if (scopeRegion !== region || service !== 'execute-api')
    return { ok: false, reason: 'Credential should be scoped to a valid region and service' };

  const amzDate = request.headers['x-amz-date'];
  const date = amzDate === undefined ? null : AMZ_DATE.exec(amzDate);
  if (date === null) return { ok: false, reason: 'Missing or malformed X-Amz-Date' };
  const [, year, month, day, hour, minute, second] = date.map(Number) as number[];
  const signingDate = new Date(Date.UTC(year ?? 0, (month ?? 1) - 1, day ?? 0, hour ?? 0, minute ?? 0, second ?? 0));
  if (amzDate?.slice(0, 8) !== scopeDate) return { ok: false, reason: 'Credential date does not match X-Amz-Date' };
  if (Math.abs(now - signingDate.getTime()) > MAX_SKEW_MS) return { ok: false, reason: 'Signature expired' };

  const query = parseQuery(request.rawQuery);
  if (query === undefined) return { ok: false, reason: 'Malformed query string' };
  const signedHeaders = signedHeaderList.split(';');
  // The signer trusts a sent payload hash; check it against the body actually received.
  const payloadHash = request.headers['x-amz-content-sha256'];
  if (
    payloadHash !== undefined &&
    payloadHash !== 'UNSIGNED-PAYLOAD' &&
    payloadHash !== createHash('sha256').update(request.body).digest('hex')
  ) {
    return { ok: false, reason: 'The provided x-amz-content-sha256 header does not match what was computed' };
  }
  if (!signedHeaders.includes('host')) return { ok: false, reason: 'The host header must be signed' };
  const headers: Record<string, string> = {};
  for (const name of signedHeaders) {
    const value = request.headers[name];
    if (value === undefined) return { ok: false, reason: `Signed header ${name} is missing` };
    headers[name] = value;
  }

  const signer = new SignatureV4({
    credentials: { accessKeyId, secretAccessKey: principal.secretAccessKey },
    region,
    service: 'execute-api',
    // Node's native SHA-256 (the pure-JavaScript one cost local mode 15 % of its CPU), with cached HMAC keys.
    sha256: Sha256,
    uriEscapePath: true,
    // Sign only what the client signed: never add x-amz-content-sha256 of our own.
    applyChecksum: false,
  });
  const signed = await signer.sign(
    new HttpRequest({
      method: request.method,
      protocol: 'http:',
      hostname: (headers.host ?? '').replace(/:\d+$/, ''),
      // The raw path, as a client's signer saw it: the signer applies API Gateway's double encoding itself.
      path: request.rawPath,
      query,
      headers,
      body: request.body,
    }),
    { signingDate, signableHeaders: new Set(signedHeaders) },
  );
  const expected = /Signature=([0-9a-f]{64})/.exec(String(signed.headers.authorization ?? ''))?.[1] ?? '';
  const same = expected.length === signature.length && timingSafeEqual(Buffer.from(expected), Buffer.from(signature));
  return same
    ? { ok: true, accessKeyId, principal }
    : { ok: false, reason: 'The request signature we calculated does not match the signature you provided' };
}
