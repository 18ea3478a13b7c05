import { type KMSClient, SignCommand } from '@aws-sdk/client-kms';
import { misconfigured, VendorError } from '../core/errors.ts';
import type { KmsSigner, KmsSignRequest } from '../ports/kms-signer.ts';

/**
 * KMS exceptions that say the key cannot sign for this connector, and the field to fix. A description names the
 * field, never the key: which key a connector uses is the operator's to look up.
 * @see https://docs.aws.amazon.com/kms/latest/APIReference/API_Sign.html#API_Sign_Errors
 */
const KEY_PROBLEMS: Readonly<Record<string, { field: string; problem: string }>> = {
  AccessDeniedException: { field: 'signingKey', problem: 'cannot be used: kms:Sign on it is denied to the vendor' },
  NotFoundException: { field: 'signingKey', problem: 'names no KMS key the vendor can find' },
  DisabledException: { field: 'signingKey', problem: 'names a KMS key that is disabled' },
  KMSInvalidStateException: { field: 'signingKey', problem: 'names a KMS key that cannot sign in its current state' },
  InvalidKeyUsageException: {
    field: 'signingAlgorithm',
    problem: 'does not fit the KMS key in signingKey (or that key is not an asymmetric signing key)',
  },
  IncorrectKeyException: { field: 'signingKey', problem: 'names a KMS key that cannot sign' },
  ValidationException: { field: 'signingKey', problem: 'is not a KMS key ID, key ARN or alias KMS accepts' },
};

/** Exceptions after which the same call may well succeed soon: KMS throttled, busy or unreachable. */
const TRANSIENT = new Set([
  'ThrottlingException',
  'LimitExceededException',
  'KMSInternalException',
  'DependencyTimeoutException',
  'KeyUnavailableException',
  'TimeoutError',
  'AbortError',
]);

/** {@link KmsSigner} over the real KMS client: `Sign` with `MessageType: RAW`. */
export class KmsSignerAdapter implements KmsSigner {
  readonly #client: KMSClient;

  constructor(client: KMSClient) {
    this.#client = client;
  }

  async sign(request: KmsSignRequest): Promise<Uint8Array> {
    try {
      const answer = await this.#client.send(
        new SignCommand({
          KeyId: request.keyId,
          Message: request.message,
          MessageType: 'RAW',
          SigningAlgorithm: request.algorithm,
        }),
        request.signal === undefined ? {} : { abortSignal: request.signal },
      );
      if (answer.Signature === undefined) throw new Error('KMS answered Sign without a signature');
      return answer.Signature;
    } catch (error) {
      throw signError(error);
    }
  }
}

/** The contract's error for a failed `Sign` (CONTRACT §3). */
export function signError(error: unknown): VendorError {
  const name = error instanceof Error ? error.name : '';
  const known = KEY_PROBLEMS[name];
  if (known !== undefined) return Object.assign(misconfigured(known.field, known.problem), { cause: error });
  const status = (error as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
  // Connection refused or reset, a timeout, a throttle, a 5xx: nothing was signed, and it may work the next time.
  if (TRANSIENT.has(name) || status === undefined || status >= 500 || status === 429) {
    return new VendorError('upstream_unavailable', 'KMS could not sign the assertion (throttled or unavailable).', {
      cause: error,
    });
  }
  return new VendorError('internal_error', 'Signing with KMS failed.', { cause: error });
}
