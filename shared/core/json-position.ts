/**
 * Where a JSON text first goes wrong, as a line and column (both from 1), without quoting it: V8's own messages
 * quote the input (a connector document, secrets and all) and give no position for most errors.
 */
export interface JsonPosition {
  readonly line: number;
  readonly column: number;
}

const WHITESPACE = new Set([' ', '\t', '\n', '\r']);
const LITERALS = ['true', 'false', 'null'];
const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const ESCAPE = /\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})/y;

/** The offset of the first character JSON.parse would refuse, or undefined for valid JSON (RFC 8259). */
export function jsonErrorOffset(text: string): number | undefined {
  let at = 0;
  const skip = () => {
    while (at < text.length && WHITESPACE.has(text[at] as string)) at += 1;
  };
  const fail = (): never => {
    throw at;
  };
  const string = () => {
    at += 1;
    while (at < text.length && text[at] !== '"') {
      if (text[at] === '\\') {
        ESCAPE.lastIndex = at;
        if (!ESCAPE.test(text)) fail();
        at = ESCAPE.lastIndex;
      } else if (text.charCodeAt(at) < 0x20) fail();
      else at += 1;
    }
    if (at >= text.length) fail();
    at += 1;
  };
  const value = (): void => {
    skip();
    const char = text[at];
    if (char === '{') {
      at += 1;
      skip();
      if (text[at] === '}') {
        at += 1;
        return;
      }
      for (;;) {
        skip();
        if (text[at] !== '"') fail();
        string();
        skip();
        if (text[at] !== ':') fail();
        at += 1;
        value();
        skip();
        if (text[at] === ',') at += 1;
        else if (text[at] === '}') {
          at += 1;
          return;
        } else fail();
      }
    }
    if (char === '[') {
      at += 1;
      skip();
      if (text[at] === ']') {
        at += 1;
        return;
      }
      for (;;) {
        value();
        skip();
        if (text[at] === ',') at += 1;
        else if (text[at] === ']') {
          at += 1;
          return;
        } else fail();
      }
    }
    if (char === '"') {
      string();
      return;
    }
    const literal = LITERALS.find((word) => text.startsWith(word, at));
    if (literal !== undefined) {
      at += literal.length;
      return;
    }
    NUMBER.lastIndex = at;
    if (!NUMBER.test(text)) fail();
    at = NUMBER.lastIndex;
  };
  try {
    value();
    skip();
    if (at < text.length) fail();
    return undefined;
  } catch (offset) {
    if (typeof offset === 'number') return offset;
    throw offset;
  }
}

/** The line and column of `offset` in `text`. */
export function positionOf(text: string, offset: number): JsonPosition {
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  return { line, column: offset - before.lastIndexOf('\n') };
}

/** " at line L, column C" for an invalid JSON text; empty when the scanner and JSON.parse disagree. */
export function jsonErrorWhere(text: string): string {
  const offset = jsonErrorOffset(text);
  if (offset === undefined) return '';
  const { line, column } = positionOf(text, offset);
  return ` at line ${line}, column ${column}`;
}
