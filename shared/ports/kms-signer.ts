/** KMS `SigningAlgorithm` values the vendor uses, one per JWS algorithm it offers (RS256, PS256, ES256). */
export type KmsSigningAlgorithm = 'RSASSA_PKCS1_V1_5_SHA_256' | 'RSASSA_PSS_SHA_256' | 'ECDSA_SHA_256';

export interface KmsSignRequest {
  /** Key ID, key ARN, alias name or alias ARN, as the connector names it. */
  readonly keyId: string;
  readonly algorithm: KmsSigningAlgorithm;
  /** The bytes to sign (`MessageType: RAW`): KMS hashes them. */
  readonly message: Uint8Array;
  readonly signal?: AbortSignal;
}

/**
 * Signs with an asymmetric KMS key: the private key never leaves KMS, every signature is an auditable `kms:Sign`.
 * Returns the signature as KMS gives it (DER for ECDSA). Fails with the contract's errors: a key that cannot be
 * used is `connector_misconfigured` naming `signingKey` or `signingAlgorithm`, KMS throttled or unreachable
 * `upstream_unavailable`.
 */
export interface KmsSigner {
  sign(request: KmsSignRequest): Promise<Uint8Array>;
}
