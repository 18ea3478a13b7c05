import { createCipheriv, createDecipheriv, randomBytes, randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** The operations served, by their `X-Amz-Target` suffix (`TrentService.<operation>`). */
export type KmsOperation = 'GenerateDataKey' | 'Encrypt' | 'Decrypt';

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
  /** Destroys every connection, then stops listening. */
  close(): Promise<void>;
}

const KEY_ARN = /^arn:[a-z-]+:kms:[a-z0-9-]+:\d{12}:key\/([A-Za-z0-9-]+)$/;
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
 * Encryption SDK's KMS keyring calls, on loopback, so the real `@aws-sdk/client-kms` client runs unchanged against it:
 *
 * - `GenerateDataKey` (KeyId; NumberOfBytes or KeySpec; EncryptionContext) → Plaintext (random bytes),
 *   CiphertextBlob (AES-256-GCM of the data key under the key's secret, the context and the key ARN as AAD, the ARN
 *   inside), KeyId (the key ARN).
 * - `Encrypt` (KeyId, Plaintext, EncryptionContext) → CiphertextBlob, KeyId, EncryptionAlgorithm.
 * - `Decrypt` (CiphertextBlob, EncryptionContext, optional KeyId) → Plaintext, KeyId, EncryptionAlgorithm.
 *
 * Errors as the service answers them (HTTP 400, `__type`): a KeyId the server was not given → NotFoundException; a
 * Decrypt whose KeyId names another key than the blob's → IncorrectKeyException; a blob the server did not make, or
 * an encryption context other than the one it was made with → InvalidCiphertextException (no message, as KMS); a
 * malformed request → ValidationException. Keys are addressed by ARN or key ID; aliases are not served.
 */
export async function startKmsServer(): Promise<KmsServer> {
  /** Key ARN → its secret. */
  const secrets = new Map<string, Buffer>();
  const calls = new Map<string, number>();
  const requests: KmsRequestRecord[] = [];

  /** A KeyId (ARN or key ID) to the ARN of a key the server holds. */
  const findKey = (keyId: unknown): string => {
    if (typeof keyId !== 'string' || keyId === '') throw new KmsError('ValidationException', 'KeyId is required');
    if (secrets.has(keyId)) return keyId;
    const byId = [...secrets.keys()].find((arn) => KEY_ARN.exec(arn)?.[1] === keyId);
    if (byId !== undefined) return byId;
    throw new KmsError('NotFoundException', `Key '${keyId}' does not exist`);
  };
  const secretOf = (arn: string): Buffer => {
    const secret = secrets.get(arn);
    if (secret === undefined) throw new KmsError('NotFoundException', `Key '${arn}' does not exist`);
    return secret;
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
      return new Set(secrets.keys());
    },
    addKey(arn) {
      if (!KEY_ARN.test(arn)) throw new Error(`not a KMS key ARN: ${arn}`);
      if (!secrets.has(arn)) secrets.set(arn, randomBytes(32));
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
