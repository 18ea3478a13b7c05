import { randomUUID } from 'node:crypto';
import { statSync } from 'node:fs';
import { readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { VendorError } from '../core/errors.ts';
import { CONNECTOR_ID, type ConnectorRef, FAMILIES, type Family } from '../core/identifiers.ts';
import { LruCache } from '../core/lru.ts';
import { refreshTokenOf, withRefreshToken } from '../domain/connector.ts';
import type { ConnectorSource, ReplaceCheck, WriteResult } from '../ports/connector-store.ts';

const isMissing = (error: unknown) =>
  error instanceof Error && 'code' in error && (error.code === 'ENOENT' || error.code === 'ENOTDIR');

/**
 * A file's timestamps come from a coarse clock (a few milliseconds on Linux, up to 2 s on some file systems): two
 * writes within one tick can leave the same stamp. A text is kept only once its file is older than this, so any
 * later write lands in a later tick and changes the stamp (git's "racily clean" rule).
 */
const TIMESTAMP_GRAIN_MS = 2_000;

interface Known {
  readonly stamp: string;
  readonly text: string;
}

/** Local mode: `<dir>/<family>/<connectorId>.json` (CONTRACT §4). */
export class FileConnectorSource implements ConnectorSource {
  readonly #dir: string;
  readonly checkpointIntervalMs = 0;
  /** The last text read of each file, with the stamp its file had then. */
  readonly #known = new LruCache<string, Known>(1000);

  constructor(dir: string) {
    this.#dir = dir;
  }

  // The connector ID was validated against CONNECTOR_ID before it gets here, so it cannot leave the folder.
  #path(ref: ConnectorRef): string {
    return join(this.#dir, ref.family, `${ref.connectorId}.json`);
  }

  /**
   * The document, read again only when its file changed (another inode, size, modification or change time): one
   * `stat` per vend instead of open, read and close through the thread pool. The stat is synchronous on purpose; it
   * is a single system call on a local folder, cheaper than a round trip through the thread pool.
   */
  async read(ref: ConnectorRef, options?: { readonly fresh?: boolean }): Promise<string | undefined> {
    const path = this.#path(ref);
    try {
      const stats = statSync(path, { throwIfNoEntry: false });
      if (stats === undefined) {
        this.#known.delete(path);
        return undefined;
      }
      const stamp = `${stats.ino}:${stats.size}:${stats.mtimeMs}:${stats.ctimeMs}`;
      const known = this.#known.get(path);
      if (known?.stamp === stamp && options?.fresh !== true) return known.text;
      // Stat before reading: a write after the stat changes the stamp, so the next read sees it.
      const text = await readFile(path, 'utf8');
      if (Date.now() - Math.max(stats.mtimeMs, stats.ctimeMs) > TIMESTAMP_GRAIN_MS)
        this.#known.set(path, { stamp, text });
      else this.#known.delete(path);
      return text;
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw new VendorError('upstream_unavailable', 'The connector store could not be read.', { cause: error });
    }
  }

  /** Write to a temporary file beside it, then rename: readers see the old or the new document, never half. */
  async writeRefreshToken(ref: ConnectorRef, refreshToken: string, mayReplace: ReplaceCheck): Promise<WriteResult> {
    const path = this.#path(ref);
    const text = await readFile(path, 'utf8');
    const current = refreshTokenOf(text);
    if (current === refreshToken) return 'written';
    if (!mayReplace(current)) return 'refused';
    const temporary = `${path}.${randomUUID()}.tmp`;
    try {
      await writeFile(temporary, withRefreshToken(text, refreshToken), { mode: 0o600, flush: true });
      await rename(temporary, path);
    } catch (error) {
      await rm(temporary, { force: true });
      throw error;
    }
    return 'written';
  }

  async list(): Promise<ConnectorRef[]> {
    const refs: ConnectorRef[] = [];
    for (const family of Object.keys(FAMILIES) as Family[]) {
      let names: string[];
      try {
        names = await readdir(join(this.#dir, family));
      } catch (error) {
        if (isMissing(error)) continue;
        throw error;
      }
      for (const name of names) {
        const connectorId = name.endsWith('.json') ? name.slice(0, -'.json'.length) : '';
        if (CONNECTOR_ID.test(connectorId)) refs.push({ family, connectorId });
      }
    }
    return refs.sort((a, b) => `${a.family}/${a.connectorId}`.localeCompare(`${b.family}/${b.connectorId}`));
  }

  async listChanged(since: number): Promise<ConnectorRef[]> {
    const changed: ConnectorRef[] = [];
    for (const ref of await this.list()) {
      const modified = await stat(this.#path(ref)).then(
        (stats) => stats.mtimeMs,
        // Gone since it was listed: a change too (the sync finds no document and discards its tokens).
        () => Number.POSITIVE_INFINITY,
      );
      if (modified >= since) changed.push(ref);
    }
    return changed;
  }
}
