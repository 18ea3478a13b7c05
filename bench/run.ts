import { writeFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { bigAnswer } from './scenarios/big-answer.ts';
import { coldStart } from './scenarios/cold-start.ts';
import { hitPath } from './scenarios/hit-path.ts';
import { hotConnector } from './scenarios/hot-connector.ts';
import { lambdaSemantics } from './scenarios/lambda-semantics.ts';
import { noVendor } from './scenarios/no-vendor.ts';
import { scale } from './scenarios/scale.ts';
import { signedAssertions } from './scenarios/signed-assertions.ts';
import { stampede } from './scenarios/stampede.ts';
import { steadyState } from './scenarios/steady-state.ts';
import { throughput } from './scenarios/throughput.ts';
import { tokensAtRest } from './scenarios/tokens-at-rest.ts';
import { type BenchOptions, ROOT, type Row, type ScenarioResult } from './support.ts';

type Scenario = (options: BenchOptions) => Promise<{ rows: Row[]; data: Record<string, unknown> }>;

const SCENARIOS: readonly { id: number; name: string; run: Scenario }[] = [
  { id: 1, name: 'hit path', run: hitPath },
  { id: 2, name: 'versus no vendor', run: noVendor },
  { id: 3, name: 'stampede', run: stampede },
  { id: 4, name: 'steady state', run: steadyState },
  { id: 5, name: 'cold start', run: coldStart },
  { id: 6, name: 'local-mode throughput', run: throughput },
  { id: 7, name: 'hot connector, 50 containers', run: hotConnector },
  { id: 8, name: 'Lambda semantics', run: lambdaSemantics },
  { id: 9, name: 'tokens at rest', run: tokensAtRest },
  { id: 10, name: 'scale: 10,000 connectors, 50,000 vends/s', run: scale },
  { id: 11, name: 'a 300 MB token answer', run: bigAnswer },
  { id: 12, name: 'signed assertions', run: signedAssertions },
];

/** `npm run bench` runs everything; `npm run bench -- --only=1,4 --repetitions=3` is for working on one scenario. */
function parseArguments(argv: readonly string[]): { only: Set<number> | undefined; repetitions: number } {
  let only: Set<number> | undefined;
  let repetitions = 5;
  for (const argument of argv) {
    const [name, value = ''] = argument.split('=');
    if (name === '--only') only = new Set(value.split(',').map(Number));
    else if (name === '--repetitions') repetitions = Math.max(1, Math.min(9, Number(value) || 5));
    else throw new Error(`unknown argument ${argument} (expected --only=1,2 or --repetitions=N)`);
  }
  return { only, repetitions };
}

function table(rows: readonly Row[]): string {
  const cells = rows.map((row) => [
    row.scenario,
    row.metric,
    row.value,
    row.target ?? '',
    row.met === undefined ? '' : row.met ? 'met' : 'MISSED',
  ]);
  const header = ['scenario', 'metric (median of repetitions)', 'value', 'target', ''];
  const lines = [header, header.map(() => '---'), ...cells].map((line) => `| ${line.join(' | ')} |`);
  return lines.join('\n');
}

/** oidc-provider warns on every start that it runs with development keys and storage, which is what the bench wants. */
function quietOidcProviderWarnings(): void {
  const warn = console.warn.bind(console);
  console.warn = (...args: unknown[]) => {
    if (typeof args[0] === 'string' && args[0].includes('oidc-provider WARNING')) return;
    warn(...args);
  };
}

async function main(): Promise<void> {
  quietOidcProviderWarnings();
  const { only, repetitions } = parseArguments(process.argv.slice(2));
  const started = performance.now();
  const results: ScenarioResult[] = [];
  const failures: string[] = [];
  for (const scenario of SCENARIOS) {
    if (only !== undefined && !only.has(scenario.id)) continue;
    process.stdout.write(`scenario ${scenario.id} (${scenario.name}) …`);
    const scenarioStarted = performance.now();
    try {
      const result = await scenario.run({ repetitions });
      const seconds = (performance.now() - scenarioStarted) / 1000;
      results.push({ id: scenario.id, name: scenario.name, seconds, ...result });
      process.stdout.write(` ${seconds.toFixed(1)} s\n`);
    } catch (error) {
      const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
      failures.push(`scenario ${scenario.id}: ${message}`);
      process.stdout.write(` FAILED\n${message}\n`);
    }
  }
  const totalSeconds = (performance.now() - started) / 1000;
  const rows = results.flatMap((result) => result.rows);
  process.stdout.write(`\n${table(rows)}\n\ntotal ${totalSeconds.toFixed(1)} s, ${repetitions} repetitions\n`);

  const cpu = cpus();
  await writeFile(
    join(ROOT, 'bench', 'results.json'),
    `${JSON.stringify(
      {
        date: new Date().toISOString(),
        node: process.version,
        machine: { cpus: cpu.length, model: cpu[0]?.model, memoryGiB: Math.round(totalmem() / 2 ** 30) },
        repetitions,
        totalSeconds,
        rows,
        scenarios: results,
        failures,
      },
      null,
      2,
    )}\n`,
  );
  if (failures.length > 0) process.exitCode = 1;
}

main().catch((error: unknown) => {
  process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
});
