import { randomUUID } from 'node:crypto';
import { readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { VendorError } from '../core/errors.ts';
import { CONNECTOR_ID, type ConnectorRef, FAMILIES, type Family } from '../core/identifiers.ts';
import { refreshTokenOf, withRefreshToken } from '../domain/connector.ts';
import type { ConnectorSource, ReplaceCheck, WriteResult } from '../ports/connector-store.ts';

const isMissing = (error: unknown) =>
  error instanceof Error && 'code' in error && (error.code === 'ENOENT' || error.code === 'ENOTDIR');

/** Local mode: `<dir>/<family>/<connectorId>.json` (CONTRACT §4). */
export class FileConnectorSource implements ConnectorSource {
  readonly #dir: string;
  readonly checkpointIntervalMs = 0;

  constructor(dir: string) {
    this.#dir = dir;
  }

  // The connector ID was validated against CONNECTOR_ID before it gets here, so it cannot leave the folder.
  #path(ref: ConnectorRef): string {
    return join(this.#dir, ref.family, `${ref.connectorId}.json`);
  }

  async read(ref: ConnectorRef): Promise<string | undefined> {
    try {
      return await readFile(this.#path(ref), 'utf8');
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
