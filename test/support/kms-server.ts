import {
  constants,
  createCipheriv,
  createDecipheriv,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
  randomUUID,
  sign,
} from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** The operations served, by their `X-Amz-Target` suffix (`TrentService.<operation>`). */
export type KmsOperation = 'GenerateDataKey' | 'Encrypt' | 'Decrypt' | 'Sign' | 'GetPublicKey';

/** Asymmetric key specs the server makes signing keys of (KMS's `KeySpec` values). */
export type SigningKeySpec = 'RSA_2048' | 'RSA_3072' | 'ECC_NIST_P256' | 'ECC_NIST_P384';

/** What one call asked for, as the server saw it (errors included): for assertions on keys and contexts. */
export interface KmsRequestRecord {
  readonly operation: string;
  /** `KeyId` as sent, undefined when the request had none (a Decrypt may leave it out). */
  readonly keyId: string | undefined;
  /** The ARN of the key the call was served with, undefined when refused before one was found. */
  readonly keyArn: string | undefined;
  /** `EncryptionContext` as sent ({} when absent). */
  readonly encryptionContext: Readonly<Record<string, string>>;
  /** The access key ID of the SigV4 `Authorization` header. */
  readonly accessKeyId: string | undefined;
  /** The exception the call was answered with (`__type`), undefined on success. */
  readonly error: string | undefined;
}

export interface KmsServer {
  readonly endpoint: string;
  /** Calls by operation name (`GenerateDataKey`, `Decrypt`, …), refused ones included. */
  readonly calls: Map<string, number>;
  /** Every call, in order of arrival. */
  readonly requests: readonly KmsRequestRecord[];
  /** The ARNs of the keys the server holds. */
  readonly keys: ReadonlySet<string>;
  /**
   * Makes a key known: `arn:<partition>:kms:<region>:<account>:key/<key ID>`, addressable by that ARN or by its key
   * ID. The server draws a 256-bit secret for it that never leaves the server.
   */
  addKey(arn: string): void;
  /**
   * Makes an asymmetric signing key (`KeyUsage: SIGN_VERIFY`) known, addressable by ARN, key ID or any alias given
   * to `addAlias`; its private key never leaves the server. Returns its public key.
   */
  addSigningKey(arn: string, spec: SigningKeySpec): KeyObject;
  /** Makes `alias/<name>` (and its alias ARN in the key's account and region) name the key `arn`. */
  addAlias(aliasName: string, arn: string): void;
  /** Disables a key: every use of it is answered with DisabledException, as KMS does. */
  disableKey(arn: string): void;
  /** Refuses a key's use to every caller with AccessDeniedException (a key policy that does not admit them). */
  denyKey(arn: string): void;
  /** Answers the next `count` calls of `operation` with the exception `type` (HTTP 400, as KMS sends throttles). */
  failNext(operation: KmsOperation, type: string, count?: number): void;
  /** Destroys every connection, then stops listening. */
  close(): Promise<void>;
}

const KEY_ARN = /^arn:[a-z-]+:kms:[a-z0-9-]+:\d{12}:key\/([A-Za-z0-9-]+)$/;
const ALIAS_ARN = /^arn:[a-z-]+:kms:[a-z0-9-]+:\d{12}:(alias\/[A-Za-z0-9/_-]+)$/;
/** KMS signs a RAW message of at most 4096 bytes. */
const MAX_SIGN_MESSAGE_BYTES = 4096;
/** What each signing algorithm needs of the key, and how node:crypto makes its signature. */
const SIGNING_ALGORITHMS: Readonly<
  Record<string, { readonly keyType: 'rsa' | 'ec'; readonly options: { padding?: number; saltLength?: number } }>
> = {
  RSASSA_PKCS1_V1_5_SHA_256: { keyType: 'rsa', options: { padding: constants.RSA_PKCS1_PADDING } },
  // KMS's PSS uses a salt as long as the hash (RFC 8017 §9.1 with sLen = hLen), as JOSE's PS256 expects.
  RSASSA_PSS_SHA_256: {
    keyType: 'rsa',
    options: { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST },
  },
  ECDSA_SHA_256: { keyType: 'ec', options: {} },
};
const SPEC_ALGORITHMS: Readonly<Record<SigningKeySpec, readonly string[]>> = {
  RSA_2048: ['RSASSA_PKCS1_V1_5_SHA_256', 'RSASSA_PSS_SHA_256'],
  RSA_3072: ['RSASSA_PKCS1_V1_5_SHA_256', 'RSASSA_PSS_SHA_256'],
  ECC_NIST_P256: ['ECDSA_SHA_256'],
  // KMS signs P-384 with SHA-384 only; SHA-256 on it is refused as the real service refuses it.
  ECC_NIST_P384: ['ECDSA_SHA_384'],
};

interface SigningKey {
  readonly spec: SigningKeySpec;
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
}

/** The first byte of every ciphertext blob the server makes. */
const BLOB_VERSION = 1;
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** KMS encrypts at most 4096 bytes and generates data keys of 1 to 1024 bytes. */
const MAX_PLAINTEXT_BYTES = 4096;
const MAX_DATA_KEY_BYTES = 1024;
const KEY_SPEC_BYTES: Readonly<Record<string, number>> = { AES_256: 32, AES_128: 16 };

class KmsError extends Error {
  readonly type: string;
  constructor(type: string, message: string | undefined) {
    super(message ?? type);
    this.type = type;
  }
}

/** The additional authenticated data of a blob: its key's ARN and the encryption context, in a canonical form. */
function aad(arn: string, context: Readonly<Record<string, string>>): Buffer {
  const entries = Object.entries(context).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return Buffer.from(JSON.stringify([arn, entries]), 'utf8');
}

/**
 * A ciphertext blob: version, the key ARN (length-prefixed, in clear, as KMS keeps the key's identity in its blobs),
 * IV, GCM tag, then the ciphertext.
 */
function seal(arn: string, secret: Buffer, plaintext: Buffer, context: Readonly<Record<string, string>>): Buffer {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', secret, iv);
  cipher.setAAD(aad(arn, context));
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  const arnBytes = Buffer.from(arn, 'utf8');
  const header = Buffer.alloc(3);
  header.writeUInt8(BLOB_VERSION, 0);
  header.writeUInt16BE(arnBytes.length, 1);
  return Buffer.concat([header, arnBytes, iv, cipher.getAuthTag(), ciphertext]);
}

/** The key ARN and the encrypted parts of a blob, or undefined when it is not one the server made. */
function parseBlob(blob: Buffer): { arn: string; iv: Buffer; tag: Buffer; ciphertext: Buffer } | undefined {
  if (blob.length < 3 || blob.readUInt8(0) !== BLOB_VERSION) return undefined;
  const arnEnd = 3 + blob.readUInt16BE(1);
  if (blob.length < arnEnd + IV_BYTES + TAG_BYTES) return undefined;
  return {
    arn: blob.subarray(3, arnEnd).toString('utf8'),
    iv: blob.subarray(arnEnd, arnEnd + IV_BYTES),
    tag: blob.subarray(arnEnd + IV_BYTES, arnEnd + IV_BYTES + TAG_BYTES),
    ciphertext: blob.subarray(arnEnd + IV_BYTES + TAG_BYTES),
  };
}

const isStringMap = (value: unknown): value is Record<string, string> =>
  typeof value === 'object' &&
  value !== null &&
  !Array.isArray(value) &&
  Object.values(value).every((entry) => typeof entry === 'string');

/**
 * The part of KMS's JSON 1.1 protocol (`X-Amz-Target: TrentService.<operation>`, blobs in base64) that the AWS
 * Encryption SDK's KMS keyring and the vendor's assertion signer call, on loopback, so the real `@aws-sdk/client-kms`
 * client runs unchanged against it:
 *
 * - `GenerateDataKey` (KeyId; NumberOfBytes or KeySpec; EncryptionContext) → Plaintext (random bytes),
 *   CiphertextBlob (AES-256-GCM of the data key under the key's secret, the context and the key ARN as AAD, the ARN
 *   inside), KeyId (the key ARN).
 * - `Encrypt` (KeyId, Plaintext, EncryptionContext) → CiphertextBlob, KeyId, EncryptionAlgorithm.
 * - `Decrypt` (CiphertextBlob, EncryptionContext, optional KeyId) → Plaintext, KeyId, EncryptionAlgorithm.
 * - `Sign` (KeyId, Message, MessageType RAW, SigningAlgorithm) → Signature (node:crypto; ECDSA in DER, PSS with a
 *   32-byte salt, as KMS), KeyId, SigningAlgorithm.
 * - `GetPublicKey` (KeyId) → PublicKey (DER SubjectPublicKeyInfo), KeySpec, KeyUsage, SigningAlgorithms.
 *
 * Errors as the service answers them (HTTP 400, `__type`): a KeyId the server was not given → NotFoundException; a
 * Decrypt whose KeyId names another key than the blob's → IncorrectKeyException; a blob the server did not make, or
 * an encryption context other than the one it was made with → InvalidCiphertextException (no message, as KMS); a
 * malformed request → ValidationException; a symmetric key asked to sign, a signing key asked to encrypt, or a
 * signing algorithm the key spec does not support → InvalidKeyUsageException; a disabled key → DisabledException;
 * a denied key → AccessDeniedException. Keys are addressed by ARN, key ID, alias name or alias ARN.
 */
export async function startKmsServer(): Promise<KmsServer> {
  /** Key ARN → its secret (symmetric keys). */
  const secrets = new Map<string, Buffer>();
  /** Key ARN → its key pair (asymmetric signing keys). */
  const signingKeys = new Map<string, SigningKey>();
  /** `alias/<name>` → key ARN. */
  const aliases = new Map<string, string>();
  const disabled = new Set<string>();
  const denied = new Set<string>();
  const faults = new Map<string, { type: string; left: number }>();
  const calls = new Map<string, number>();
  const requests: KmsRequestRecord[] = [];
  const allKeys = () => [...secrets.keys(), ...signingKeys.keys()];

  /** A KeyId (ARN, key ID, alias name or alias ARN) to the ARN of a key the server holds, usable now. */
  const findKey = (keyId: unknown): string => {
    if (typeof keyId !== 'string' || keyId === '') throw new KmsError('ValidationException', 'KeyId is required');
    const alias = keyId.startsWith('alias/') ? keyId : ALIAS_ARN.exec(keyId)?.[1];
    const arn =
      alias !== undefined
        ? aliases.get(alias)
        : allKeys().find((candidate) => candidate === keyId || KEY_ARN.exec(candidate)?.[1] === keyId);
    if (arn === undefined) throw new KmsError('NotFoundException', `Key '${keyId}' does not exist`);
    if (denied.has(arn)) {
      throw new KmsError('AccessDeniedException', 'User is not authorized to perform this operation on this key');
    }
    if (disabled.has(arn)) throw new KmsError('DisabledException', `${arn} is disabled.`);
    return arn;
  };
  const secretOf = (arn: string): Buffer => {
    const secret = secrets.get(arn);
    if (secret === undefined) {
      throw new KmsError(
        'InvalidKeyUsageException',
        `${arn} key usage is SIGN_VERIFY which is not valid for this call.`,
      );
    }
    return secret;
  };
  const signingKeyOf = (arn: string): SigningKey => {
    const key = signingKeys.get(arn);
    if (key === undefined) {
      throw new KmsError(
        'InvalidKeyUsageException',
        `${arn} key usage is ENCRYPT_DECRYPT which is not valid for Sign.`,
      );
    }
    return key;
  };
  const contextOf = (input: Record<string, unknown>): Record<string, string> => {
    const context = input.EncryptionContext ?? {};
    if (!isStringMap(context)) throw new KmsError('ValidationException', 'EncryptionContext must map strings');
    return context;
  };
  const blobOf = (value: unknown, name: string): Buffer => {
    if (typeof value !== 'string' || value === '') throw new KmsError('ValidationException', `${name} is required`);
    return Buffer.from(value, 'base64');
  };

  const operations: Record<KmsOperation, (input: Record<string, unknown>, served: (arn: string) => void) => object> = {
    GenerateDataKey(input, served) {
      const arn = findKey(input.KeyId);
      served(arn);
      const { NumberOfBytes, KeySpec } = input;
      if ((NumberOfBytes === undefined) === (KeySpec === undefined)) {
        throw new KmsError('ValidationException', 'Please specify either number of bytes or key spec.');
      }
      const length = KeySpec === undefined ? NumberOfBytes : KEY_SPEC_BYTES[String(KeySpec)];
      if (typeof length !== 'number' || !Number.isInteger(length) || length < 1 || length > MAX_DATA_KEY_BYTES) {
        throw new KmsError('ValidationException', 'NumberOfBytes or KeySpec is out of range');
      }
      const plaintext = randomBytes(length);
      return {
        CiphertextBlob: seal(arn, secretOf(arn), plaintext, contextOf(input)).toString('base64'),
        Plaintext: plaintext.toString('base64'),
        KeyId: arn,
      };
    },
    Encrypt(input, served) {
      const arn = findKey(input.KeyId);
      served(arn);
      const plaintext = blobOf(input.Plaintext, 'Plaintext');
      if (plaintext.length > MAX_PLAINTEXT_BYTES) {
        throw new KmsError('ValidationException', `Plaintext is longer than ${MAX_PLAINTEXT_BYTES} bytes`);
      }
      return {
        CiphertextBlob: seal(arn, secretOf(arn), plaintext, contextOf(input)).toString('base64'),
        KeyId: arn,
        EncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
      };
    },
    Decrypt(input, served) {
      const requested = input.KeyId === undefined ? undefined : findKey(input.KeyId);
      const context = contextOf(input);
      const parsed = parseBlob(blobOf(input.CiphertextBlob, 'CiphertextBlob'));
      if (parsed === undefined || !secrets.has(parsed.arn)) throw new KmsError('InvalidCiphertextException', undefined);
      if (requested !== undefined && requested !== parsed.arn) {
        throw new KmsError(
          'IncorrectKeyException',
          'The key ID in the request does not identify a CMK that can perform this operation.',
        );
      }
      served(parsed.arn);
      const decipher = createDecipheriv('aes-256-gcm', secretOf(parsed.arn), parsed.iv);
      decipher.setAAD(aad(parsed.arn, context));
      decipher.setAuthTag(parsed.tag);
      let plaintext: Buffer;
      try {
        plaintext = Buffer.concat([decipher.update(parsed.ciphertext), decipher.final()]);
      } catch {
        // Altered blob, other context: GCM's tag does not verify.
        throw new KmsError('InvalidCiphertextException', undefined);
      }
      return { KeyId: parsed.arn, Plaintext: plaintext.toString('base64'), EncryptionAlgorithm: 'SYMMETRIC_DEFAULT' };
    },
    Sign(input, served) {
      const arn = findKey(input.KeyId);
      served(arn);
      const key = signingKeyOf(arn);
      const message = blobOf(input.Message, 'Message');
      if (message.length > MAX_SIGN_MESSAGE_BYTES) {
        throw new KmsError('ValidationException', `Message is longer than ${MAX_SIGN_MESSAGE_BYTES} bytes`);
      }
      if ((input.MessageType ?? 'RAW') !== 'RAW') {
        throw new KmsError('ValidationException', 'this loopback KMS signs RAW messages only');
      }
      const algorithm = String(input.SigningAlgorithm ?? '');
      const how = SIGNING_ALGORITHMS[algorithm];
      if (how === undefined || !SPEC_ALGORITHMS[key.spec].includes(algorithm)) {
        throw new KmsError(
          'InvalidKeyUsageException',
          `Signing algorithm ${algorithm} is not compatible with the key spec ${key.spec}.`,
        );
      }
      // ECDSA comes out DER-encoded, as KMS gives it.
      const signature = sign('sha256', message, { key: key.privateKey, ...how.options, dsaEncoding: 'der' });
      return { KeyId: arn, Signature: signature.toString('base64'), SigningAlgorithm: algorithm };
    },
    GetPublicKey(input, served) {
      const arn = findKey(input.KeyId);
      served(arn);
      const key = signingKeyOf(arn);
      return {
        KeyId: arn,
        KeySpec: key.spec,
        KeyUsage: 'SIGN_VERIFY',
        PublicKey: key.publicKey.export({ type: 'spki', format: 'der' }).toString('base64'),
        SigningAlgorithms: SPEC_ALGORITHMS[key.spec],
      };
    },
  };
  const isOperation = (name: string): name is KmsOperation => Object.hasOwn(operations, name);

  const server: Server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const operation = String(request.headers['x-amz-target'] ?? '').replace(/^TrentService\./, '');
      calls.set(operation, (calls.get(operation) ?? 0) + 1);
      const accessKeyId = /Credential=([^/,\s]+)\//.exec(String(request.headers.authorization ?? ''))?.[1];
      const answer = (status: number, body: object) => {
        response.writeHead(status, {
          'content-type': 'application/x-amz-json-1.1',
          'x-amzn-requestid': randomUUID(),
        });
        response.end(JSON.stringify(body));
      };
      let input: Record<string, unknown> = {};
      let keyArn: string | undefined;
      let error: string | undefined;
      try {
        const parsed = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as unknown;
        if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) {
          input = parsed as Record<string, unknown>;
        }
        if (!isOperation(operation)) throw new KmsError('UnknownOperationException', undefined);
        const fault = faults.get(operation);
        if (fault !== undefined && fault.left > 0) {
          fault.left -= 1;
          throw new KmsError(fault.type, 'Injected by the test');
        }
        answer(
          200,
          operations[operation](input, (arn) => {
            keyArn = arn;
          }),
        );
      } catch (caught) {
        const failure =
          caught instanceof KmsError
            ? caught
            : caught instanceof SyntaxError
              ? new KmsError('SerializationException', 'The request body is not JSON')
              : new KmsError('KMSInternalException', undefined);
        error = failure.type;
        const status = failure.type === 'KMSInternalException' ? 500 : 400;
        answer(status, {
          __type: failure.type,
          ...(failure.message === failure.type ? {} : { message: failure.message }),
        });
      }
      requests.push({
        operation,
        keyId: typeof input.KeyId === 'string' ? input.KeyId : undefined,
        keyArn,
        encryptionContext: isStringMap(input.EncryptionContext) ? { ...input.EncryptionContext } : {},
        accessKeyId,
        error,
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    calls,
    requests,
    get keys() {
      return new Set(allKeys());
    },
    addKey(arn) {
      if (!KEY_ARN.test(arn)) throw new Error(`not a KMS key ARN: ${arn}`);
      if (!secrets.has(arn)) secrets.set(arn, randomBytes(32));
    },
    addSigningKey(arn, spec) {
      if (!KEY_ARN.test(arn)) throw new Error(`not a KMS key ARN: ${arn}`);
      const pair = spec.startsWith('RSA_')
        ? generateKeyPairSync('rsa', { modulusLength: Number(spec.slice(4)) })
        : generateKeyPairSync('ec', { namedCurve: spec === 'ECC_NIST_P256' ? 'P-256' : 'P-384' });
      signingKeys.set(arn, { spec, ...pair });
      return pair.publicKey;
    },
    addAlias(aliasName, arn) {
      if (!aliasName.startsWith('alias/')) throw new Error(`not an alias name: ${aliasName}`);
      aliases.set(aliasName, arn);
    },
    disableKey(arn) {
      disabled.add(arn);
    },
    denyKey(arn) {
      denied.add(arn);
    },
    failNext(operation, type, count = 1) {
      faults.set(operation, { type, left: count });
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
