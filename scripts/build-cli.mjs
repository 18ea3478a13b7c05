#!/usr/bin/env node
// Builds the CLI package's one file (cli/dist/token-vendor.mjs): cli/main.ts and everything it imports bundled by
// esbuild into ESM for Node 20 and later, so an installed CLI needs no TypeScript loader and no dependencies.
// Runs at `npm pack` (prepack); `--clean` (postpack) removes it again.
import { readFileSync, rmSync } from 'node:fs';
import { build } from 'esbuild';

const dist = new URL('../cli/dist/', import.meta.url);
rmSync(dist, { recursive: true, force: true });
if (!process.argv.includes('--clean')) {
  const { version } = JSON.parse(readFileSync(new URL('../cli/package.json', import.meta.url), 'utf8'));
  await build({
    entryPoints: [new URL('../cli/main.ts', import.meta.url).pathname],
    outfile: new URL('token-vendor.mjs', dist).pathname,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    minify: true,
    legalComments: 'none',
    // CommonJS dependencies call require; an ES module has none of its own.
    banner: {
      js: "#!/usr/bin/env node\nimport { createRequire as __createRequire } from 'node:module';\nconst require = __createRequire(import.meta.url);",
    },
    define: { 'process.env.TOKEN_VENDOR_CLI_VERSION': JSON.stringify(version) },
    logLevel: 'warning',
  });
}
