import { createHash, timingSafeEqual } from 'node:crypto';
import { Hash } from '@smithy/core/serde';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';

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
    // Node's native SHA-256 (the pure-JavaScript one cost local mode 15 % of its CPU).
    sha256: Hash.bind(null, 'sha256'),
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
