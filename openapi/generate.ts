import { readFile, writeFile } from 'node:fs/promises';
import { buildOpenApiDocument } from './document.ts';

// Writes openapi/openapi.json from the service's own definitions; `npm run openapi` then lets Biome format it.
const root = new URL('../', import.meta.url);
const { version } = JSON.parse(await readFile(new URL('package.json', root), 'utf8')) as { version: string };
const target = new URL('openapi/openapi.json', root);
await writeFile(target, `${JSON.stringify(buildOpenApiDocument(version), null, 2)}\n`);
process.stdout.write(`wrote ${target.pathname}\n`);
