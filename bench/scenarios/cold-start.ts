import { spawn } from 'node:child_process';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { build, type Metafile } from 'esbuild';
import { type BenchOptions, median, ms, NODE, ROOT, type Row, ratio, withCleanup } from '../support.ts';

/** The same banner the CDK construct puts on every bundle (infra/token-vendor-function.ts). */
const ESM_REQUIRE_SHIM = "import { createRequire } from 'module'; const require = createRequire(import.meta.url);";
const FUNCTIONS = ['client-credentials', 'password', 'refresh-token', 'rotate'] as const;
const SPAWN_TIMEOUT_MS = 15_000;

/** Imports the bundle in a fresh process and prints how long the import (module initialization) took. */
const PROBE = [
  'const started = performance.now();',
  'const module = await import(process.env.BENCH_BUNDLE_URL);',
  'const initMs = performance.now() - started;',
  "if (typeof module.handler !== 'function') throw new Error('the bundle exports no handler');",
  'process.stdout.write(JSON.stringify({ initMs, processMs: performance.now() }));',
].join('\n');

/**
 * What a Lambda container of the vendor has in its environment at init (the table name, the token key, the refresher,
 * region, credentials). Init contacts neither KMS nor Lambda.
 */
const LAMBDA_ENV = {
  TOKEN_VENDOR_TABLE: 'token-vendor-tokens',
  TOKEN_VENDOR_TOKEN_KEY_ID: 'arn:aws:kms:us-east-1:111122223333:key/0b7e4c1a-9f2d-4e8b-a6c3-5d1f2e3a4b5c',
  TOKEN_VENDOR_REFRESH_FUNCTION: 'token-vendor-rotate',
  AWS_REGION: 'us-east-1',
  AWS_DEFAULT_REGION: 'us-east-1',
  AWS_ACCESS_KEY_ID: 'AKIAIOSFODNN7EXAMPLE',
  AWS_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
  AWS_SESSION_TOKEN: 'bench',
  AWS_LAMBDA_FUNCTION_NAME: 'bench',
  POWERTOOLS_SERVICE_NAME: 'token-vendor',
  POWERTOOLS_METRICS_NAMESPACE: 'TokenVendor',
  POWERTOOLS_LOG_LEVEL: 'INFO',
};

async function probe(bundle: string, sourceMaps: boolean): Promise<{ initMs: number; processMs: number }> {
  const child = spawn(NODE, ['--input-type=module', '-e', PROBE], {
    env: {
      PATH: process.env.PATH ?? '',
      ...LAMBDA_ENV,
      BENCH_BUNDLE_URL: pathToFileURL(bundle).href,
      // The construct sets this on every function, so stack traces point into the sources.
      ...(sourceMaps ? { NODE_OPTIONS: '--enable-source-maps' } : {}),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString('utf8');
  });
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8');
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), SPAWN_TIMEOUT_MS);
  try {
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', resolve);
    });
    if (code !== 0) throw new Error(`probe of ${bundle} exited with ${String(code)}: ${stderr}`);
  } finally {
    clearTimeout(timer);
  }
  // The handler modules may log at init; the probe's JSON is the last thing written.
  const line = stdout.slice(stdout.lastIndexOf('{"initMs"'));
  return JSON.parse(line) as { initMs: number; processMs: number };
}

interface Measured {
  readonly name: string;
  readonly kb: number;
  readonly mapKb: number;
  readonly initMs: number[];
  readonly initNoMapsMs: number[];
  /** The ten largest contributors to the bundle, KB by package (`(project)` for the vendor's own code). */
  readonly largest: Record<string, number>;
}

/** Bundle bytes by npm package (scoped packages by scope and name), from esbuild's metafile. */
function bytesByPackage(metafile: Metafile): Record<string, number> {
  const bytes = new Map<string, number>();
  for (const output of Object.values(metafile.outputs)) {
    for (const [path, { bytesInOutput }] of Object.entries(output.inputs)) {
      const match = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(path);
      const name = match?.[1] ?? '(project)';
      bytes.set(name, (bytes.get(name) ?? 0) + bytesInOutput);
    }
  }
  return Object.fromEntries(
    [...bytes.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 10)
      .map(([name, size]) => [name, Math.round(size / 1024)]),
  );
}

/**
 * Scenario 5: each function bundled as the CDK construct bundles it (esbuild, ESM, minified, node24, AWS SDK
 * bundled, external source map, the require banner), beside an empty handler bundled the same way; module
 * initialization timed by importing each bundle in a fresh `node` process.
 */
export async function coldStart(options: BenchOptions) {
  return withCleanup(async (defer) => {
    const dir = await mkdtemp(join(tmpdir(), 'token-vendor-bench-'));
    defer(() => rm(dir, { recursive: true, force: true }));
    const emptyEntry = join(dir, 'empty.mjs');
    await writeFile(emptyEntry, "export const handler = async () => ({ statusCode: 200, body: '' });\n");
    const entries = [
      ...FUNCTIONS.map((name) => ({ name, entry: join(ROOT, 'functions', `${name}.ts`) })),
      { name: 'empty handler', entry: emptyEntry },
    ];
    const bundles: { name: string; file: string; packages: Record<string, number> }[] = [];
    for (const { name, entry } of entries) {
      const file = join(dir, name.replace(' ', '-'), 'index.mjs');
      const { metafile } = await build({
        entryPoints: [entry],
        outfile: file,
        bundle: true,
        platform: 'node',
        format: 'esm',
        target: 'node24',
        minify: true,
        sourcemap: true,
        sourcesContent: false,
        mainFields: ['module', 'main'],
        banner: { js: ESM_REQUIRE_SHIM },
        logLevel: 'error',
        metafile: true,
      });
      bundles.push({ name, file, packages: bytesByPackage(metafile) });
    }
    const measured: Measured[] = [];
    for (const { name, file, packages } of bundles) {
      measured.push({
        name,
        largest: packages,
        kb: (await stat(file)).size / 1024,
        mapKb: (await stat(`${file}.map`)).size / 1024,
        initMs: [],
        initNoMapsMs: [],
      });
    }
    // Round-robin, so that a busy moment on the machine hits every bundle alike.
    for (let repetition = 0; repetition < options.repetitions; repetition += 1) {
      for (const [index, { file }] of bundles.entries()) {
        const entry = measured[index] as Measured;
        entry.initMs.push((await probe(file, true)).initMs);
        entry.initNoMapsMs.push((await probe(file, false)).initMs);
      }
    }
    const empty = measured.find((entry) => entry.name === 'empty handler') as Measured;
    const emptyInit = median(empty.initMs);
    const scenario = '5 cold start';
    const rows: Row[] = measured.map((entry) => {
      const init = median(entry.initMs);
      const noMaps = median(entry.initNoMapsMs);
      return {
        scenario,
        metric: `${entry.name}: bundle KB (minified, SDK bundled) · init with source maps (without)`,
        value:
          entry === empty
            ? `${entry.kb.toFixed(1)} KB · ${ms(init)} (${ms(noMaps)})`
            : `${entry.kb.toFixed(0)} KB · ${ms(init, 0)} (${ms(noMaps, 0)}) = +${ms(init - emptyInit, 0)}, ${ratio(init / emptyInit, 0)} empty`,
      };
    });
    return {
      rows,
      data: {
        bundling:
          'esbuild: bundle, platform node, format esm, target node24, minify, sourcemap (external, no sources content), mainFields module,main, createRequire banner; @aws-sdk/* bundled (bundleAwsSDK: true, as in infra/)',
        initMeasure:
          'performance.now() around import() in a fresh node process; with NODE_OPTIONS=--enable-source-maps as deployed, and without',
        bundles: measured.map((entry) => ({
          name: entry.name,
          kb: entry.kb,
          mapKb: entry.mapKb,
          initMedianMs: median(entry.initMs),
          initNoSourceMapsMedianMs: median(entry.initNoMapsMs),
          initMs: entry.initMs,
          initNoSourceMapsMs: entry.initNoMapsMs,
          largestPackagesKb: entry.largest,
        })),
      },
    };
  });
}
