/** The `200` body of a vend (CONTRACT §3), as the service sends it and the client library reads it. */
export interface VendResponse {
  readonly access_token: string;
  readonly token_type: string;
  readonly expires_in: number;
  readonly expires_at: string;
  readonly scope?: string;
  readonly header: { readonly name: string; readonly value: string };
}
