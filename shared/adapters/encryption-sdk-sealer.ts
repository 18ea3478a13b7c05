import { randomBytes } from 'node:crypto';
// The SDK's parts, not its umbrella package: the RSA keyring and the branch key store would only add to cold start.
import {
  getLocalCryptographicMaterialsCache,
  NodeCachingMaterialsManager,
} from '@aws-crypto/caching-materials-manager-node';
import { buildDecrypt } from '@aws-crypto/decrypt-node';
import { buildEncrypt } from '@aws-crypto/encrypt-node';
import { KmsKeyringNode } from '@aws-crypto/kms-keyring-node';
import { AlgorithmSuiteIdentifier, CommitmentPolicy, type KeyringNode } from '@aws-crypto/material-management-node';
import { RawAesKeyringNode, RawAesWrappingSuiteIdentifier } from '@aws-crypto/raw-aes-keyring-node';
import { KMS } from '@aws-sdk/client-kms';
import { upstreamUnavailable, VendorError } from '../core/errors.ts';
import { LruCache } from '../core/lru.ts';
import { SEAL_CONTEXT_FAMILY, SEAL_CONTEXT_ITEM } from '../core/settings.ts';
import { familyOfItem } from '../core/table.ts';
import type { SealContext, TokenSealer } from '../ports/token-sealer.ts';
import { boundedHandler, type CallTimeouts, KMS_TIMEOUTS } from './aws-clients.ts';

const { encrypt } = buildEncrypt(CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT);
const { decrypt } = buildDecrypt(CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT);
/** Key commitment, no signature: the vendor's roles are the only writers and readers, so ECDSA would only cost. */
const SUITE = AlgorithmSuiteIdentifier.ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY;
/** A data key serves this long and this many values, so a hot connector costs KMS a call every few minutes. */
const DATA_KEY_MAX_AGE_MS = 5 * 60_000;
const DATA_KEY_MAX_MESSAGES = 10_000;
const CONTEXT_ITEM = SEAL_CONTEXT_ITEM;
const CONTEXT_FAMILY = SEAL_CONTEXT_FAMILY;
/**
 * What is sealed: a version mark, the item, then the value. The item is authenticated with the value (AES-GCM), so
 * a value copied to another item does not open, while the encryption context names only the family and field: one
 * data key (cached by the SDK for 5 minutes) seals many items, and a container that opens the second token sealed
 * under it asks KMS nothing. With the item in the context, every token cost every reader a KMS Decrypt.
 */
const PAYLOAD_MARK = 'tv2\n';
const payload = (item: string, value: string) => `${PAYLOAD_MARK}${item}\n${value}`;
const CONTEXT_FIELD = 'token-vendor:field';

/** Raised when a stored value does not open: not sealed for this item, altered, or planted by another writer. */
export class SealError extends Error {
  constructor(cause: unknown) {
    super('A stored value could not be opened.', { cause });
    this.name = 'SealError';
  }
}

/**
 * Seals token values with the AWS Encryption SDK: a data key from the keyring (KMS in AWS, a local AES key in local
 * mode), cached by the SDK's caching materials manager, the item and field bound as encryption context. Opened
 * values are kept by their ciphertext, so a token read from the table again costs no decryption.
 */
export class EncryptionSdkSealer implements TokenSealer {
  readonly #materials: NodeCachingMaterialsManager;
  readonly #opened = new LruCache<string, string>(10_000);

  constructor(keyring: KeyringNode) {
    this.#materials = new NodeCachingMaterialsManager({
      backingMaterials: keyring,
      cache: getLocalCryptographicMaterialsCache(1000),
      maxAge: DATA_KEY_MAX_AGE_MS,
      maxMessagesEncrypted: DATA_KEY_MAX_MESSAGES,
    });
  }

  /** Under a customer-managed KMS key (AWS); the KMS client is bounded like every other SDK client. */
  static kms(
    keyId: string,
    timeouts: CallTimeouts = KMS_TIMEOUTS,
    instrument: (client: KMS) => KMS = (client) => client,
  ): EncryptionSdkSealer {
    const client = instrument(new KMS({ maxAttempts: timeouts.maxAttempts, requestHandler: boundedHandler(timeouts) }));
    return new EncryptionSdkSealer(new KmsKeyringNode({ generatorKeyId: keyId, clientProvider: () => client }));
  }

  /** Under a 256-bit AES key held by the process (local mode keeps it in its state folder). */
  static localKey(key: Uint8Array): EncryptionSdkSealer {
    // The SDK wants the key in a buffer of its own (not a view into Node's shared pool).
    const isolated = new Uint8Array(new ArrayBuffer(key.byteLength));
    isolated.set(key);
    return new EncryptionSdkSealer(
      new RawAesKeyringNode({
        keyNamespace: 'token-vendor',
        keyName: 'local',
        unencryptedMasterKey: isolated,
        wrappingSuite: RawAesWrappingSuiteIdentifier.AES256_GCM_IV12_TAG16_NO_PADDING,
      }),
    );
  }

  /** A fresh random key: for tests and tools that need a sealer and keep nothing. */
  static ephemeral(): EncryptionSdkSealer {
    return EncryptionSdkSealer.localKey(randomBytes(32));
  }

  async seal(plaintext: string, context: SealContext): Promise<string> {
    try {
      const { result } = await encrypt(this.#materials, payload(context.item, plaintext), {
        encryptionContext: { [CONTEXT_FAMILY]: familyOfItem(context.item), [CONTEXT_FIELD]: context.field },
        suiteId: SUITE,
      });
      const sealed = result.toString('base64');
      this.#opened.set(cacheKey(sealed, context), plaintext);
      return sealed;
    } catch (error) {
      throw keyUnavailable(error);
    }
  }

  async open(sealed: string, context: SealContext): Promise<string> {
    const key = cacheKey(sealed, context);
    const known = this.#opened.get(key);
    if (known !== undefined) return known;
    let opened: Awaited<ReturnType<typeof decrypt>>;
    try {
      opened = await decrypt(this.#materials, Buffer.from(sealed, 'base64'));
    } catch (error) {
      throw isKmsUnavailable(error) ? keyUnavailable(error) : new SealError(error);
    }
    const bound = opened.messageHeader.encryptionContext;
    const text = opened.plaintext.toString('utf8');
    // The SDK checks the ciphertext against the context it carries; this checks that context, and the item sealed
    // with the value, are this item's.
    let plaintext: string;
    if (bound[CONTEXT_ITEM] !== undefined) {
      // Sealed before family-scoped data keys: the context names the item.
      if (bound[CONTEXT_ITEM] !== context.item || bound[CONTEXT_FIELD] !== context.field) {
        throw new SealError(new Error('sealed for another item'));
      }
      plaintext = text;
    } else {
      const prefix = payload(context.item, '');
      if (
        bound[CONTEXT_FAMILY] !== familyOfItem(context.item) ||
        bound[CONTEXT_FIELD] !== context.field ||
        !text.startsWith(prefix)
      ) {
        throw new SealError(new Error('sealed for another item'));
      }
      plaintext = text.slice(prefix.length);
    }
    this.#opened.set(key, plaintext);
    return plaintext;
  }
}

const cacheKey = (sealed: string, context: SealContext) => `${context.item}\u0000${context.field}\u0000${sealed}`;

/** KMS throttled, unreachable or down: the contract's 503, not a broken value. */
function isKmsUnavailable(error: unknown): boolean {
  for (let current = error; current instanceof Error; current = current.cause) {
    if (
      /Throttl|TimeoutError|ECONN|KMSInternal|ServiceUnavailable|socket hang up/.test(
        `${current.name} ${current.message}`,
      )
    ) {
      return true;
    }
  }
  return false;
}

function keyUnavailable(cause: unknown): VendorError {
  return isKmsUnavailable(cause)
    ? upstreamUnavailable('The token key (KMS) is unavailable; retry shortly.', cause)
    : new VendorError('internal_error', 'The token key could not be used.', { cause });
}
