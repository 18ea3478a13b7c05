import { Sha256 } from '@aws-crypto/sha256-js';
import { fromNodeProviderChain } from '@aws-sdk/credential-providers';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import { CONNECTOR_ID, type Family, isFamily, normalizeScope, refKey, tokenKeyOf } from '../shared/core/identifiers.ts';
import { LruCache } from '../shared/core/lru.ts';
import { requiredValidityMs } from '../shared/core/token-policy.ts';
import type { VendResponse } from '../shared/core/vend-response.ts';
import { errorFromResponse, TokenVendorError } from './errors.ts';

/** The vendor's `200` body (CONTRACT §3). */
export type TokenResponse = VendResponse;

/** AWS credentials, or a provider of them, as every AWS SDK client takes them. */
export type Credentials = NonNullable<ConstructorParameters<typeof SignatureV4>[0]['credentials']>;

export interface TokenVendorClientOptions {
  /**
   * The API's base URL: the stage URL in AWS (`https://abc123.execute-api.eu-west-1.amazonaws.com/v1`, the stack's
   * `ApiUrl` output) or local mode's (`http://127.0.0.1:3000`).
   */
  readonly endpoint: string | URL;
  /**
   * Region of the SigV4 scope.
   * @default the region in an `execute-api` host name, else `AWS_REGION`, else `us-east-1`
   */
  readonly region?: string;
  /**
   * What to sign with.
   * @default `fromNodeProviderChain()`: environment, SSO, profiles, web identity, ECS and EC2 roles, Lambda's role
   */
  readonly credentials?: Credentials;
  /**
   * The fetch used for the vendor and for {@link TokenVendorClient.fetch}'s downstream calls.
   * @default globalThis.fetch
   */
  readonly fetch?: typeof globalThis.fetch;
  /**
   * Milliseconds one call to the vendor may take (API Gateway itself gives up after 29 s).
   * @default 30000
   */
  readonly timeoutMs?: number;
  /** The clock, in epoch milliseconds. @default Date.now */
  readonly now?: () => number;
}

export interface TokenOptions {
  /** Space-separated scopes, a subset of the connector's. @default all of the connector's scope */
  readonly scope?: string;
  /**
   * Seconds the token must still be valid. Above half of the token's lifetime it counts as half, as the vendor
   * counts it, so short-lived tokens are still served from the cache.
   * @default 60
   */
  readonly minTtl?: number;
}

const DEFAULT_MIN_TTL_SECONDS = 60;
const MAX_MIN_TTL_SECONDS = 999_999_999;
const MAX_CACHE_ENTRIES = 1000;
const EXECUTE_API_HOST = /\.execute-api\.([a-z0-9-]+)\.(?:vpce\.)?amazonaws\.com(?:\.cn)?$/;

interface Target {
  readonly family: Family;
  readonly connectorId: string;
  readonly scope: string | undefined;
  readonly minTtl: number | undefined;
  /** Cache and single-flight key: connector and normalised scope set. */
  readonly key: string;
}

interface Entry {
  readonly token: TokenResponse;
  /** The earlier of `expires_at` and receipt time + `expires_in`, so a skewed clock only refreshes sooner. */
  readonly expiresAt: number;
  /** The lifetime the token had left when it arrived, for the half-lifetime cap on minTtl. */
  readonly lifetimeMs: number;
}

/** Bodies fetch can send twice; a stream is consumed by the first attempt. */
function isReplayable(body: RequestInit['body']): boolean {
  return (
    body === undefined ||
    body === null ||
    typeof body === 'string' ||
    body instanceof ArrayBuffer ||
    ArrayBuffer.isView(body) ||
    body instanceof Blob ||
    body instanceof URLSearchParams ||
    body instanceof FormData
  );
}

function withHeader(init: RequestInit, header: TokenResponse['header']): RequestInit {
  const headers = new Headers(init.headers);
  headers.set(header.name, header.value);
  return { ...init, headers };
}

function isTokenResponse(body: unknown): body is TokenResponse {
  if (typeof body !== 'object' || body === null) return false;
  const token = body as Record<string, unknown>;
  const header = token.header as Record<string, unknown> | null | undefined;
  return (
    typeof token.access_token === 'string' &&
    typeof token.token_type === 'string' &&
    typeof token.expires_in === 'number' &&
    typeof token.expires_at === 'string' &&
    !Number.isNaN(Date.parse(token.expires_at)) &&
    (token.scope === undefined || typeof token.scope === 'string') &&
    typeof header === 'object' &&
    header !== null &&
    typeof header.name === 'string' &&
    typeof header.value === 'string'
  );
}

const invalidRequest = (message: string) => new TokenVendorError('invalid_request', message, { status: 400 });

/**
 * A workload's client for the token vendor: signs each call with SigV4 (service `execute-api`) using the standard
 * AWS credential chain, keeps tokens in memory until `expires_at` minus `minTtl`, and sends one request for all
 * concurrent callers of the same connector and scope. Works unchanged against AWS and local mode.
 *
 * Errors are {@link TokenVendorError}s carrying the contract's `code`.
 *
 * @example
 * ```ts
 * import { TokenVendorClient } from '@token-vendor/client';
 *
 * const vendor = new TokenVendorClient({ endpoint: process.env.TOKEN_VENDOR_ENDPOINT! });
 *
 * // The connector's own header (name and value), e.g. { name: 'Authorization', value: 'Bearer eyJ…' }.
 * const { name, value } = await vendor.authorizationHeader('client-credentials', 'crm', { scope: 'read' });
 *
 * // Or let the client add it; on a 401 from the API it forces one refresh and retries once.
 * const response = await vendor.fetch('client-credentials', 'crm', 'https://api.crm.example/v2/accounts');
 * ```
 */
export class TokenVendorClient {
  readonly #base: URL;
  /** The stage path without a trailing slash (`/v1` in AWS, empty in local mode). */
  readonly #basePath: string;
  readonly #signer: SignatureV4;
  readonly #fetch: typeof globalThis.fetch;
  readonly #timeoutMs: number;
  readonly #now: () => number;
  readonly #cache = new LruCache<string, Entry>(MAX_CACHE_ENTRIES);
  readonly #inflight = new Map<string, Promise<Entry>>();
  readonly #refreshing = new Map<string, Promise<Entry>>();

  constructor(options: TokenVendorClientOptions) {
    const base = new URL(options.endpoint);
    if (base.protocol !== 'https:' && base.protocol !== 'http:') {
      throw new TypeError('TokenVendorClient: endpoint must be an http(s) URL');
    }
    if (base.search !== '' || base.hash !== '') {
      throw new TypeError('TokenVendorClient: endpoint must not have a query or fragment');
    }
    this.#base = base;
    this.#basePath = base.pathname.replace(/\/+$/, '');
    const region =
      options.region ??
      EXECUTE_API_HOST.exec(base.hostname)?.[1] ??
      process.env.AWS_REGION ??
      process.env.AWS_DEFAULT_REGION ??
      'us-east-1';
    this.#signer = new SignatureV4({
      credentials: options.credentials ?? fromNodeProviderChain(),
      region,
      service: 'execute-api',
      sha256: Sha256,
    });
    this.#fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.#timeoutMs = options.timeoutMs ?? 30_000;
    this.#now = options.now ?? Date.now;
  }

  /**
   * A token valid for at least `minTtl` seconds, from this process's cache when it has one, else from the vendor
   * (`GET /tokens/{family}/{connectorId}`). Concurrent calls for the same connector and scope share one request.
   *
   * @example
   * ```ts
   * const token = await vendor.getToken('refresh-token', 'mailbox', { minTtl: 300 });
   * console.log(token.expires_at);
   * ```
   * @throws TokenVendorError
   */
  async getToken(family: Family | string, connectorId: string, options: TokenOptions = {}): Promise<TokenResponse> {
    const target = this.#target(family, connectorId, options);
    const minTtl = options.minTtl ?? DEFAULT_MIN_TTL_SECONDS;
    const cached = this.#cache.get(target.key);
    if (cached !== undefined && this.#serves(cached, minTtl)) return cached.token;
    const pending = this.#inflight.get(target.key);
    if (pending !== undefined) {
      // A request for the same token is on its way; its failure is this caller's failure too.
      const shared = await pending;
      if (this.#serves(shared, minTtl)) return shared.token;
    }
    return (await this.#singleFlight(this.#inflight, target, false)).token;
  }

  /**
   * The header to send to the downstream API, as the connector defines it (`headerAuthKey`,
   * `headerAuthValuePattern`): `{ name: 'Authorization', value: 'Bearer …' }` by default.
   *
   * @example
   * ```ts
   * const header = await vendor.authorizationHeader('password', 'erp');
   * await fetch(url, { headers: { [header.name]: header.value } });
   * ```
   * @throws TokenVendorError
   */
  async authorizationHeader(
    family: Family | string,
    connectorId: string,
    options: TokenOptions = {},
  ): Promise<TokenResponse['header']> {
    return (await this.getToken(family, connectorId, options)).header;
  }

  /**
   * Discards the cached token, here and in the vendor, and returns a new one (`POST …/refresh`): for a token the
   * downstream API refused. The vendor allows one forced refresh per connector every few seconds (5 by default)
   * and answers sooner ones with `rate_limited` (`retryAfterSeconds` says when). Concurrent calls share one request.
   *
   * @throws TokenVendorError
   */
  async forceRefresh(family: Family | string, connectorId: string, options: TokenOptions = {}): Promise<TokenResponse> {
    const target = this.#target(family, connectorId, options);
    return (await this.#singleFlight(this.#refreshing, target, true)).token;
  }

  /**
   * `fetch(url, init)` with the connector's header added. When the downstream API answers 401, the token is
   * refreshed once (unless another call already replaced it) and the request is sent once more; a second 401 is
   * returned as it is. A request whose body is a stream is not sent twice: its 401 is returned.
   *
   * @example
   * ```ts
   * const response = await vendor.fetch('client-credentials', 'crm', 'https://api.crm.example/v2/accounts', {
   *   method: 'POST',
   *   headers: { 'content-type': 'application/json' },
   *   body: JSON.stringify({ name: 'ACME' }),
   * });
   * ```
   * @throws TokenVendorError when no token can be had; downstream failures are the returned response's
   */
  async fetch(
    family: Family | string,
    connectorId: string,
    input: string | URL,
    init: RequestInit = {},
    options: TokenOptions = {},
  ): Promise<Response> {
    const token = await this.getToken(family, connectorId, options);
    const first = await this.#fetch(input, withHeader(init, token.header));
    if (first.status !== 401 || !isReplayable(init.body)) return first;
    const replacement = await this.#replacementFor(this.#target(family, connectorId, options), token.access_token);
    if (replacement === undefined) return first;
    await first.body?.cancel();
    return this.#fetch(input, withHeader(init, replacement.header));
  }

  /** Forgets every cached token (the vendor's cache is not touched). */
  clear(): void {
    this.#cache.clear();
  }

  /** A token other than the refused one: one a concurrent call already got, or a forced refresh. */
  async #replacementFor(target: Target, refused: string): Promise<TokenResponse | undefined> {
    const cached = this.#cache.get(target.key);
    if (cached !== undefined && cached.token.access_token !== refused && cached.expiresAt > this.#now()) {
      return cached.token;
    }
    try {
      return (await this.#singleFlight(this.#refreshing, target, true)).token;
    } catch (error) {
      if (!(error instanceof TokenVendorError && error.code === 'rate_limited')) throw error;
      // Someone forced a refresh of this connector moments ago, so the vendor most likely holds a new token.
      const fresh = await this.#singleFlight(this.#inflight, target, false);
      return fresh.token.access_token === refused ? undefined : fresh.token;
    }
  }

  #target(family: string, connectorId: string, options: TokenOptions): Target {
    if (!isFamily(family)) throw invalidRequest(`Unknown grant family "${family}".`);
    if (!CONNECTOR_ID.test(connectorId)) throw invalidRequest('Malformed connector ID.');
    const scopes = options.scope === undefined ? [] : normalizeScope(options.scope);
    if (scopes === undefined) throw invalidRequest('Malformed scope: expected space-separated scope tokens.');
    const { minTtl } = options;
    if (minTtl !== undefined && !(Number.isInteger(minTtl) && minTtl >= 0 && minTtl <= MAX_MIN_TTL_SECONDS)) {
      throw invalidRequest('Malformed minTtl: expected a whole number of seconds.');
    }
    const key = tokenKeyOf(refKey({ family, connectorId }), scopes.join(' '));
    return { family, connectorId, scope: options.scope, minTtl, key };
  }

  #serves(entry: Entry, minTtlSeconds: number): boolean {
    const left = entry.expiresAt - this.#now();
    return left > 0 && left >= requiredValidityMs(entry.lifetimeMs, minTtlSeconds);
  }

  /** One request per key in `flights` at a time; its result goes to the cache. */
  #singleFlight(flights: Map<string, Promise<Entry>>, target: Target, force: boolean): Promise<Entry> {
    const running = flights.get(target.key);
    if (running !== undefined) return running;
    const flight = this.#vend(target, force)
      .then((entry) => {
        this.#remember(target.key, entry, force);
        return entry;
      })
      .finally(() => {
        if (flights.get(target.key) === flight) flights.delete(target.key);
      });
    flights.set(target.key, flight);
    return flight;
  }

  #remember(key: string, entry: Entry, force: boolean): void {
    const current = this.#cache.peek(key);
    // A plain vend that started before a forced refresh may return the discarded token after it; keep the newer.
    if (!force && current !== undefined && current.expiresAt > entry.expiresAt) return;
    this.#cache.set(key, entry);
  }

  async #vend(target: Target, force: boolean): Promise<Entry> {
    const path = `${this.#basePath}/tokens/${target.family}/${target.connectorId}${force ? '/refresh' : ''}`;
    const query: Record<string, string> = {};
    if (target.minTtl !== undefined) query.minTtl = String(target.minTtl);
    if (target.scope !== undefined) query.scope = target.scope;
    const method = force ? 'POST' : 'GET';

    let signed: HttpRequest;
    try {
      signed = (await this.#signer.sign(
        new HttpRequest({
          method,
          protocol: this.#base.protocol,
          hostname: this.#base.hostname,
          ...(this.#base.port === '' ? {} : { port: Number(this.#base.port) }),
          path,
          query,
          headers: { host: this.#base.host },
        }),
      )) as HttpRequest;
    } catch (error) {
      throw new TokenVendorError('credentials_unavailable', 'No AWS credentials to sign the request with.', {
        status: 0,
        cause: error,
      });
    }

    // The same names and values the signature covers, sorted as the canonical request sorts them.
    const search = Object.keys(query)
      .sort()
      .map((name) => `${encodeURIComponent(name)}=${encodeURIComponent(query[name] ?? '')}`)
      .join('&');
    const url = `${this.#base.origin}${path}${search === '' ? '' : `?${search}`}`;
    const sentAt = this.#now();
    let response: Response;
    let text: string;
    try {
      response = await this.#fetch(url, {
        method,
        headers: signed.headers,
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
      text = await response.text();
    } catch (error) {
      throw new TokenVendorError('vendor_unreachable', 'The token vendor could not be reached.', {
        status: 0,
        cause: error,
      });
    }
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    if (response.status !== 200) {
      throw errorFromResponse(response.status, body, response.headers.get('retry-after'), this.#now());
    }
    if (!isTokenResponse(body)) {
      throw new TokenVendorError('vendor_invalid_response', 'The token vendor answered 200 without a token.', {
        status: 200,
      });
    }
    const lifetimeMs = Math.max(0, body.expires_in) * 1000;
    return { token: body, expiresAt: Math.min(Date.parse(body.expires_at), sentAt + lifetimeMs), lifetimeMs };
  }
}
