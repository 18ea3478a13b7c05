/**
 * Tracing the use cases ask for: a named span around one piece of work (the token request), annotated with
 * identifiers only (a connector's `<family>/<id>`, a grant type), never a secret or a token. X-Ray in AWS (the
 * Powertools adapter), nothing elsewhere.
 */
export interface Tracing {
  span<T>(name: string, annotations: Readonly<Record<string, string>>, work: () => Promise<T>): Promise<T>;
}
