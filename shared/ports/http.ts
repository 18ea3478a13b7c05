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
  /** The answer was larger than any token answer; it was not read (and `text` is empty). */
  readonly oversized?: boolean;
}

export type HttpClient = (request: HttpRequest) => Promise<HttpResponse>;
