import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { LookupFunction } from 'node:net';
import { DestinationRefusedError, isAddressAllowed, type NetworkPolicy, refuseUrl } from '../domain/network-policy.ts';
import type { HttpClient, HttpResponse } from '../ports/http.ts';

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

/** Largest token answer read; anything larger is not a token answer, and is not read any further. */
const MAX_BODY_BYTES = 64 * 1024;
/**
 * An idle connection is closed after this long, before a server's own keep-alive timeout (Node's and nginx's are
 * 5 s and more) can close it under a request: a reset on a reused connection would leave a refresh token's fate unknown.
 */
const IDLE_SOCKET_MS = 4_000;

/**
 * The time ran out before the connection was up: nothing was sent. Socket errors (ECONNREFUSED, ENOTFOUND, …) say so
 * with their own codes already.
 */
const unsentIfAborted = (error: Error) =>
  error.name === 'AbortError' || error.name === 'TimeoutError'
    ? Object.assign(new Error('the time ran out before a connection was made', { cause: error }), {
        code: 'ENOTCONNECTED',
      })
    : error;

/** An answer read whole, or cut short at the cap (the socket is closed, so the server stops sending). */
function readAnswer(response: IncomingMessage, signal: AbortSignal | undefined): Promise<HttpResponse> {
  const headers = new Headers();
  const raw = response.rawHeaders;
  for (let index = 0; index + 1 < raw.length; index += 2)
    headers.append(raw[index] as string, raw[index + 1] as string);
  const status = response.statusCode ?? 0;
  const oversized = (): HttpResponse => {
    response.destroy();
    return { status, headers, text: '', oversized: true };
  };
  if (Number(response.headers['content-length'] ?? '0') > MAX_BODY_BYTES) return Promise.resolve(oversized());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let bytes = 0;
    const onAbort = () => response.destroy(signal?.reason as Error);
    signal?.addEventListener('abort', onAbort, { once: true });
    const settle = () => signal?.removeEventListener('abort', onAbort);
    response.on('data', (chunk: Buffer) => {
      bytes += chunk.byteLength;
      if (bytes > MAX_BODY_BYTES) {
        settle();
        resolve(oversized());
        return;
      }
      chunks.push(chunk);
    });
    response.once('end', () => {
      settle();
      // TextDecoder drops a byte order mark, as fetch's text() did.
      resolve({ status, headers, text: new TextDecoder().decode(Buffer.concat(chunks, bytes)) });
    });
    response.on('error', (error) => {
      settle();
      reject(error);
    });
    // A connection closed mid-answer ends the response without 'end' on some paths; 'close' catches it.
    response.once('close', () => {
      settle();
      if (!response.complete && bytes <= MAX_BODY_BYTES) {
        reject(
          Object.assign(new Error('the connection closed before the answer was complete'), { code: 'ECONNRESET' }),
        );
      }
    });
  });
}

/**
 * HttpClient over `node:http`/`node:https` with an SSRF guard: the URL is checked before the request (scheme, IP
 * literals) and every address a name resolves to at connect time, through the agents' `lookup`. Redirects are never
 * followed (`node:http` follows none): following one would send credentials elsewhere. The signal bounds the whole
 * exchange, the answer's body included; an answer over 64 KiB is reported as `oversized` without being read.
 */
export function createHttpClient(policy: NetworkPolicy, resolve: Resolver = systemResolver): HttpClient {
  const lookup = guardedLookup(policy, resolve);
  const agents = {
    'http:': new HttpAgent({ keepAlive: true, timeout: IDLE_SOCKET_MS, lookup }),
    'https:': new HttpsAgent({ keepAlive: true, timeout: IDLE_SOCKET_MS, lookup }),
  };
  return (request) => {
    const url = new URL(request.url);
    const refusal = refuseUrl(url, policy);
    if (refusal !== undefined) return Promise.reject(new DestinationRefusedError(refusal));
    const body = Buffer.from(request.body, 'utf8');
    const isHttps = url.protocol === 'https:';
    return new Promise<HttpResponse>((resolveAnswer, reject) => {
      try {
        const outgoing = (isHttps ? httpsRequest : httpRequest)(url, {
          method: request.method,
          headers: { ...request.headers, 'content-length': String(body.byteLength) },
          agent: isHttps ? agents['https:'] : agents['http:'],
          ...(request.signal === undefined ? {} : { signal: request.signal }),
        });
        // Nothing is written before the connection is up: running out of time until then proves the request unsent.
        let connected = false;
        outgoing.once('socket', (socket) => {
          if (!socket.connecting) connected = true;
          else socket.once('connect', () => (connected = true));
        });
        // 'on', not 'once': a second error after the first must not go unhandled.
        outgoing.on('error', (error) => reject(connected ? error : unsentIfAborted(error)));
        outgoing.once('response', (response) => {
          readAnswer(response, request.signal).then(resolveAnswer, reject);
        });
        outgoing.end(body);
      } catch (error) {
        // Invalid header names or values are refused synchronously.
        reject(error);
      }
    });
  };
}
