/**
 * What a sealed value is bound to: the table item it lives in and its field. A sealed value copied to another item
 * or field does not open.
 */
export interface SealContext {
  readonly item: string;
  readonly field: string;
}

/**
 * Envelope encryption of every token value the vendor stores (CONTRACT §2: whoever can read the table's items
 * cannot use what they read).
 */
export interface TokenSealer {
  seal(plaintext: string, context: SealContext): Promise<string>;
  /** @throws when the value was not sealed for this context, was altered, or the key may not be used */
  open(sealed: string, context: SealContext): Promise<string>;
}
