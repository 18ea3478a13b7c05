import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';

/** Where a local Lambda container finds the key file (local mode's own variable, never a function's). */
export const LOCAL_KEY_FILE = 'TOKEN_VENDOR_LOCAL_KEY_FILE';

/**
 * Local mode's token key: 256 random bits generated once into the state folder (readable by the owner only), so the
 * table it keeps on disk holds no token in clear and its tokens survive a restart.
 */
export async function loadLocalTokenKey(path: string): Promise<Buffer> {
  try {
    const key = Buffer.from((await readFile(path, 'utf8')).trim(), 'base64');
    if (key.length === 32) return key;
    throw new Error(`${path} does not hold a 256-bit key`);
  } catch (error) {
    if (!(error instanceof Error && 'code' in error && error.code === 'ENOENT')) throw error;
  }
  const key = randomBytes(32);
  await mkdir(dirname(path), { recursive: true });
  // `wx`: two local instances starting at once must not each write their own key.
  await writeFile(path, `${key.toString('base64')}\n`, { mode: 0o600, flag: 'wx' }).catch(async (error: unknown) => {
    if (error instanceof Error && 'code' in error && error.code === 'EEXIST') return;
    throw error;
  });
  return Buffer.from((await readFile(path, 'utf8')).trim(), 'base64');
}
