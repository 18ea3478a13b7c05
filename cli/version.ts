import { readFileSync } from 'node:fs';

/**
 * The CLI's version: its package's (cli/package.json). The packaged bundle has it inlined at build time
 * (scripts/build-cli.mjs), so the file is read only when the CLI runs from the repository.
 */
export const VERSION: string =
  process.env.TOKEN_VENDOR_CLI_VERSION ??
  (JSON.parse(readFileSync(new URL('./package.json', import.meta.url), 'utf8')) as { version: string }).version;
