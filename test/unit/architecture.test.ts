import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '..', '..');

interface Import {
  /** The importing file, relative to the repository. */
  readonly from: string;
  /** The imported file relative to the repository, or the package name. */
  readonly to: string;
  readonly typeOnly: boolean;
}

function sources(folder: string): string[] {
  return readdirSync(join(ROOT, folder), { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile() && /\.(ts|mjs)$/.test(entry.name) && !entry.name.endsWith('.d.ts'))
    .map((entry) => relative(ROOT, join(entry.parentPath, entry.name)));
}

/** Every static import, re-export and dynamic import in a file, resolved to a repository path or package name. */
function importsOf(file: string): Import[] {
  const text = readFileSync(join(ROOT, file), 'utf8');
  const found: Import[] = [];
  const pattern =
    /(?:^|\n)\s*(import|export)(\s+type)?[^'"`;]*?from\s*['"]([^'"]+)['"]|import\(\s*['"`]([^'"`]+)['"`]|(?:^|\n)\s*import\s*['"]([^'"]+)['"]/g;
  for (const match of text.matchAll(pattern)) {
    const specifier = match[3] ?? match[4] ?? match[5] ?? '';
    const to = specifier.startsWith('.')
      ? relative(ROOT, resolve(dirname(join(ROOT, file)), specifier))
      : specifier.startsWith('node:')
        ? specifier
        : specifier
            .split('/')
            .slice(0, specifier.startsWith('@') ? 2 : 1)
            .join('/');
    found.push({ from: file, to, typeOnly: match[2] !== undefined });
  }
  return found;
}

const all = ['shared', 'functions', 'local', 'infra', 'client', 'cli', 'openapi'].flatMap(sources).flatMap(importsOf);
const importsIn = (folder: string) => all.filter((entry) => entry.from.startsWith(`${folder}/`));
const inside = (path: string, ...folders: string[]) => folders.some((folder) => path.startsWith(`${folder}/`));
const isPackage = (to: string) => !to.includes('/') || to.startsWith('@') || to.startsWith('node:');
const violations = (imports: Import[], allowed: (entry: Import) => boolean) =>
  imports.filter((entry) => !allowed(entry)).map((entry) => `${entry.from} → ${entry.to}`);

/** Packages that do I/O or belong to one runtime: only adapters and the Lambda glue may use them. */
const RUNTIME_PACKAGES = ['@aws-sdk', '@smithy', '@aws-lambda-powertools', '@middy', 'undici', 'dynalite'];
const isRuntimePackage = (to: string) => RUNTIME_PACKAGES.some((name) => to === name || to.startsWith(`${name}/`));

describe('Architecture: the direction of imports', () => {
  it('reads imports at all (the check below is not vacuous)', () => {
    expect(importsIn('shared/use-cases').length).toBeGreaterThan(20);
    expect(importsIn('client').some((entry) => entry.to.startsWith('shared/core/'))).toBe(true);
  });

  it('keeps the domain free of the outer layers (functions, local mode, infra, client, CLI)', () => {
    const outer = ['functions', 'local', 'infra', 'client', 'cli', 'openapi', 'bench', 'test'];
    expect(violations(importsIn('shared'), (entry) => !inside(entry.to, ...outer))).toEqual([]);
  });

  it('keeps shared/core pure: it imports nothing but itself (no I/O, no SDK, no zod)', () => {
    expect(violations(importsIn('shared/core'), (entry) => inside(entry.to, 'shared/core'))).toEqual([]);
  });

  it('keeps shared/ports to types: type-only imports, no values exported', () => {
    const ports = sources('shared/ports');
    const values = ports.filter((file) =>
      /^export\s+(const|let|function|class|async|enum)\b/m.test(readFileSync(join(ROOT, file), 'utf8')),
    );
    expect(values).toEqual([]);
    expect(violations(importsIn('shared/ports'), (entry) => entry.typeOnly)).toEqual([]);
  });

  it('keeps the domain and the use cases off adapters and runtime packages', () => {
    const imports = [...importsIn('shared/domain'), ...importsIn('shared/use-cases')];
    expect(violations(imports, (entry) => !inside(entry.to, 'shared/adapters') && !isRuntimePackage(entry.to))).toEqual(
      [],
    );
  });

  it('keeps the domain off the use cases, and adapters off the use cases', () => {
    expect(violations(importsIn('shared/domain'), (entry) => !inside(entry.to, 'shared/use-cases'))).toEqual([]);
    expect(violations(importsIn('shared/adapters'), (entry) => !inside(entry.to, 'shared/use-cases'))).toEqual([]);
  });

  it('lets the client library and the CDK construct import nothing of the service but shared/core', () => {
    const imports = [...importsIn('client'), ...importsIn('infra')];
    expect(
      violations(imports, (entry) => isPackage(entry.to) || inside(entry.to, 'shared/core', 'client', 'infra')),
    ).toEqual([]);
    // The client is installed into workloads: no schema library, no SDK beyond signing and credentials.
    expect(violations(importsIn('client'), (entry) => entry.to !== 'zod')).toEqual([]);
  });

  it('lets the API document import shared/core and the connector schema it documents, nothing else', () => {
    expect(
      violations(
        importsIn('openapi'),
        (entry) =>
          isPackage(entry.to) ||
          inside(entry.to, 'shared/core', 'openapi', 'client') ||
          entry.to === 'shared/domain/connector.ts',
      ),
    ).toEqual([]);
  });
});
