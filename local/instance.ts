import { rmSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * A running local mode, as it records itself in its state folder: what the CLI needs to reach the same embedded
 * DynamoDB (`token-vendor status --dir …`) and what a second `npm start` needs to leave this one alone.
 */
export interface LocalInstance {
  readonly pid: number;
  readonly stateDir: string;
  /** The API's URL, once it listens. */
  readonly url?: string;
  /** The DynamoDB it uses: the embedded one's loopback address, or the `AWS_ENDPOINT_URL_DYNAMODB` it was given. */
  readonly dynamodbEndpoint?: string;
  readonly table?: string;
  readonly region?: string;
  /** The connectors folder it serves (absolute), or undefined when they come from Secrets Manager. */
  readonly connectorsDir?: string;
}

/** Relative to where local mode runs. */
export const DEFAULT_STATE_DIR = join('.token-vendor', 'state');
const RECORD = 'local-mode.json';

/** Whether a process with this ID exists (EPERM: it does, someone else's). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function readRecord(stateDir: string): Promise<LocalInstance | undefined> {
  try {
    const record = JSON.parse(await readFile(join(stateDir, RECORD), 'utf8')) as Partial<LocalInstance>;
    return typeof record.pid === 'number' ? ({ ...record, stateDir } as LocalInstance) : undefined;
  } catch {
    return undefined;
  }
}

/** The local mode running on `stateDir`, if one is. */
export async function runningInstance(stateDir: string): Promise<LocalInstance | undefined> {
  const record = await readRecord(stateDir);
  return record !== undefined && alive(record.pid) ? record : undefined;
}

export class StateDirInUseError extends Error {
  readonly holder: LocalInstance;

  constructor(holder: LocalInstance) {
    super(
      `another local mode (pid ${holder.pid}${holder.url === undefined ? '' : `, ${holder.url}`}) is running with ` +
        `its state in ${holder.stateDir}; it was left alone. Stop it first, or give this one a TOKEN_VENDOR_STATE_DIR ` +
        'and a PORT of its own.',
    );
    this.name = 'StateDirInUseError';
    this.holder = holder;
  }
}

export interface StateClaim {
  /** Rewrites the record (atomically: a reader sees the old one or the new one). */
  update(fields: Omit<LocalInstance, 'pid' | 'stateDir'>): Promise<void>;
  /** Removes the record; also done when the process exits. */
  release(): void;
}

/**
 * Takes the state folder for this process, before anything in it is written: the embedded DynamoDB's files and
 * the demo connectors belong to one process at a time. A record left by a process that died is taken over.
 * @throws StateDirInUseError when a live process holds it
 */
export async function claimStateDir(stateDir: string): Promise<StateClaim> {
  await mkdir(stateDir, { recursive: true });
  const path = join(stateDir, RECORD);
  const own = { pid: process.pid };
  for (let attempt = 0; ; attempt += 1) {
    try {
      await writeFile(path, JSON.stringify(own), { flag: 'wx', mode: 0o600 });
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw error;
      const holder = await readRecord(stateDir);
      if (holder !== undefined && holder.pid !== process.pid && alive(holder.pid)) throw new StateDirInUseError(holder);
      await rm(path, { force: true });
    }
  }
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    rmSync(path, { force: true });
  };
  process.once('exit', release);
  return {
    async update(fields) {
      const temporary = `${path}.${process.pid}.tmp`;
      await writeFile(temporary, `${JSON.stringify({ ...own, ...fields }, null, 2)}\n`, { mode: 0o600 });
      await rename(temporary, path);
    },
    release,
  };
}
