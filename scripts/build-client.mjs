#!/usr/bin/env node
// Builds the client package (client/dist): ESM JavaScript for Node 20 and later, with declarations, by tsc from
// the same sources the repository runs, relative imports rewritten from .ts to .js. Runs at `npm pack` (prepack);
// `--clean` (postpack) removes it again so the repository never runs a stale copy.
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const client = fileURLToPath(new URL('../client/', import.meta.url));
const dist = new URL('../client/dist/', import.meta.url);
rmSync(dist, { recursive: true, force: true });
if (!process.argv.includes('--clean')) {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: client, stdio: 'inherit' });
}
