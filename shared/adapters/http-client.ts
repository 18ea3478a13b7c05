import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import type { LookupFunction } from 'node:net';
import { Agent, fetch } from 'undici';
import { DestinationRefusedError, isAddressAllowed, type NetworkPolicy, refuseUrl } from '../domain/network-policy.ts';
import type { HttpClient } from '../ports/http.ts';

/** Resolves a host name to every address it has. */
export type Resolver = (hostname: string, callback: (error: Error | null, addresses: LookupAddress[]) => void) => void;

const systemResolver: Resolver = (hostname, callback) => {
  dnsLookup(hostname, { all: true }, (error, addresses) => callback(error, addresses));
};

/**
 * The lookup the socket connects with: every address a name resolves to must be allowed (a name with one bad
 * address among good ones is refused, against DNS rebinding), and the socket connects to exactly those.
 */
function guardedLookup(policy: NetworkPolicy, resolve: Resolver): LookupFunction {
  return (hostname, options, callback) => {
    resolve(hostname, (error, addresses) => {
      if (error !== null) return callback(error, '', 0);
      const wanted = addresses.filter(
        (address) => options.family === undefined || options.family === 0 || address.family === options.family,
      );
      if (wanted.length === 0) {
        return callback(Object.assign(new Error(`no address for ${hostname}`), { code: 'ENOTFOUND' }), '', 0);
      }
      if (wanted.some((address) => !isAddressAllowed(address.address, policy))) {
        return callback(new DestinationRefusedError('resolves to an address the vendor may not call'), '', 0);
      }
      if (options.all === true) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, wanted);
      const [first] = wanted;
      return callback(null, first?.address ?? '', first?.family ?? 4);
    });
  };
}

/** Largest token answer read; anything larger is not a token answer. */
const MAX_BODY_BYTES = 64 * 1024;

/**
 * HttpClient over undici's fetch with an SSRF guard: the URL is checked before the request (scheme, IP literals)
 * and every resolved address at connect time, through undici's connect hook, because Node's built-in fetch
 * ignores `http.Agent`. Redirects are never followed: following one would send credentials elsewhere.
 */
export function createHttpClient(policy: NetworkPolicy, resolve: Resolver = systemResolver): HttpClient {
  const dispatcher = new Agent({ connect: { lookup: guardedLookup(policy, resolve) } });
  return async (request) => {
    const refusal = refuseUrl(new URL(request.url), policy);
    if (refusal !== undefined) throw new DestinationRefusedError(refusal);
    const response = await fetch(request.url, {
      method: request.method,
      headers: request.headers,
      body: request.body,
      redirect: 'manual',
      dispatcher,
      ...(request.signal === undefined ? {} : { signal: request.signal }),
    });
    const declared = Number(response.headers.get('content-length') ?? '0');
    if (declared > MAX_BODY_BYTES) {
      await response.body?.cancel();
      return { status: response.status, headers: response.headers as unknown as Headers, text: '' };
    }
    const text = await response.text();
    return {
      status: response.status,
      headers: response.headers as unknown as Headers,
      text: text.slice(0, MAX_BODY_BYTES),
    };
  };
}
