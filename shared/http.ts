/** The one HTTP capability the OAuth client needs; tests pass real loopback servers, faults use other ports. */
export interface HttpRequest {
  readonly url: string;
  readonly method: 'POST';
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
  readonly signal?: AbortSignal;
}

export interface HttpResponse {
  readonly status: number;
  readonly headers: Headers;
  readonly text: string;
}

export type HttpClient = (request: HttpRequest) => Promise<HttpResponse>;

/** Largest token answer read; anything larger is not a token answer. */
const MAX_BODY_BYTES = 64 * 1024;

/**
 * HttpClient over Node's fetch. Redirects are never followed: a token endpoint that redirects is misconfigured,
 * and following one would send credentials elsewhere.
 */
export const fetchHttpClient: HttpClient = async (request) => {
  const response = await fetch(request.url, {
    method: request.method,
    headers: request.headers,
    body: request.body,
    redirect: 'manual',
    ...(request.signal === undefined ? {} : { signal: request.signal }),
  });
  const declared = Number(response.headers.get('content-length') ?? '0');
  if (declared > MAX_BODY_BYTES) {
    await response.body?.cancel();
    return { status: response.status, headers: response.headers, text: '' };
  }
  const text = await response.text();
  return { status: response.status, headers: response.headers, text: text.slice(0, MAX_BODY_BYTES) };
};
