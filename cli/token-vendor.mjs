#!/usr/bin/env node
// The `token-vendor` command (package.json "bin"). The CLI is TypeScript: Node 24, the project's own and first on
// PATH under npm and npx, runs it as it is (as `npm start` runs local mode); an older Node gets tsx's loader.
const cli = process.features.typescript
  ? await import('./main.ts')
  : await (await import('tsx/esm/api')).tsImport('./main.ts', import.meta.url);
await cli.run();
