import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { type ParseArgsOptionsConfig, parseArgs } from 'node:util';
import {
  type CliIo,
  CommandError,
  connectorsList,
  connectorsPut,
  connectorsValidate,
  status,
  tokenGet,
  UsageError,
  type Values,
} from './commands.ts';
import { connect } from './connect.ts';
import { VERSION } from './version.ts';

export type { CliIo } from './commands.ts';

/** Exit codes: 0 done, 1 the command failed, 2 wrong usage. */
export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

interface Command {
  readonly name: string;
  readonly summary: string;
  readonly usage: string;
  readonly description: string;
  readonly options: ParseArgsOptionsConfig;
  /** One line per option, in the order shown. */
  readonly optionHelp: readonly (readonly [string, string])[];
  readonly run: (values: Values, positionals: readonly string[], io: CliIo) => Promise<void>;
}

const WHERE_OPTIONS: ParseArgsOptionsConfig = {
  dir: { type: 'string' },
  prefix: { type: 'string' },
  region: { type: 'string' },
};
const WHERE_HELP: readonly (readonly [string, string])[] = [
  ['--dir <folder>', "local mode's connectors folder (<folder>/<family>/<id>.json)"],
  ['--prefix <prefix>', 'Secrets Manager: secrets named <prefix>/<family>/<id> (the deployment uses token-vendor)'],
  ['--region <region>', 'AWS region (default: AWS_REGION, else us-east-1)'],
];
const WHERE_NOTE = [
  'Without --dir or --prefix: TOKEN_VENDOR_CONNECTORS_DIR, else TOKEN_VENDOR_SECRET_PREFIX, else ./connectors',
  '(put creates it; list and status, when it does not exist, read the folder the running local mode serves).',
].join('\n');

const COMMANDS: readonly Command[] = [
  {
    name: 'token get',
    summary: 'get a token from the vendor, signed with your AWS credentials',
    usage: 'token-vendor token get <family>/<connectorId> [options]',
    description: [
      'Calls GET /tokens/<family>/<connectorId>, signed with SigV4 (service execute-api) using the standard AWS',
      'credential chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, SSO, roles), and prints the access',
      'token alone, the header to send, or the whole answer.',
      '',
      'Local mode: AWS_ACCESS_KEY_ID=AKIALOCALDEVELOPER AWS_SECRET_ACCESS_KEY=local-dev-only \\',
      '            token-vendor token get client-credentials/demo',
    ].join('\n'),
    options: {
      scope: { type: 'string' },
      'min-ttl': { type: 'string' },
      header: { type: 'boolean' },
      json: { type: 'boolean' },
      endpoint: { type: 'string' },
      region: { type: 'string' },
    },
    optionHelp: [
      ['--scope <scopes>', "space-separated, a subset of the connector's (default: all of it)"],
      ['--min-ttl <seconds>', 'seconds the token must still be valid (default 60)'],
      ['--header', 'print the header to send: "<name>: <value>"'],
      ['--json', 'print the whole answer (token, type, expiry, scope, header)'],
      ['--endpoint <url>', `the API's base URL (default: TOKEN_VENDOR_ENDPOINT, else http://127.0.0.1:3000)`],
      ['--region <region>', 'SigV4 region (default: from an execute-api URL, else AWS_REGION, else us-east-1)'],
    ],
    run: tokenGet,
  },
  {
    name: 'connectors validate',
    summary: "check connector documents with the service's own schema",
    usage: 'token-vendor connectors validate <file>... [--family <family>]',
    description: [
      'Validates each document exactly as the vendor does (same schema, same messages: the field, never its value).',
      "A file at <…>/<family>/<id>.json must also have that family's grantType. Warns about a token URL that only",
      'local mode accepts.',
    ].join('\n'),
    options: { family: { type: 'string' } },
    optionHelp: [['--family <family>', 'the family the documents must belong to (default: from the path, if any)']],
    run: connectorsValidate,
  },
  {
    name: 'connectors put',
    summary: 'validate a document, then store it in a folder or in Secrets Manager',
    usage:
      'token-vendor connectors put <family>/<connectorId> --file <document.json> [--dir <folder> | --prefix <prefix>]',
    description: [
      'Validates the document first and writes nothing if it is invalid. A folder is written atomically (a',
      'temporary file, then a rename); Secrets Manager gets PutSecretValue, or CreateSecret for a new connector.',
      'The vendor reads a changed secret within TOKEN_VENDOR_SECRET_MAX_AGE_SECONDS (30 s). A new document clears',
      "the connector's needs_reauthorization state.",
      WHERE_NOTE,
    ].join('\n'),
    options: { file: { type: 'string', short: 'f' }, 'kms-key-id': { type: 'string' }, ...WHERE_OPTIONS },
    optionHelp: [
      ['-f, --file <path>', 'the connector document (JSON)'],
      ...WHERE_HELP,
      ['--kms-key-id <key>', 'KMS key for a new secret (the key the deployment was given, if any)'],
    ],
    run: connectorsPut,
  },
  {
    name: 'connectors list',
    summary: 'list the connectors in a folder or under a secret prefix',
    usage: 'token-vendor connectors list [--dir <folder> | --prefix <prefix>] [--json]',
    description: ['Prints one <family>/<connectorId> per line.', WHERE_NOTE].join('\n'),
    options: { json: { type: 'boolean' }, ...WHERE_OPTIONS },
    optionHelp: [...WHERE_HELP, ['--json', 'print a JSON array']],
    run: connectorsList,
  },
  {
    name: 'connect',
    summary: "obtain a refresh-token connector's refresh token in the browser (authorization code + PKCE)",
    usage: 'token-vendor connect refresh-token/<connectorId> [--dir <folder> | --prefix <prefix>] [options]',
    description: [
      "Runs the OAuth authorization-code flow with PKCE against the connector's authorizationUrl (and",
      'authorizationScope), receives the browser on a loopback redirect URI, exchanges the code at tokenUrl with the',
      "connector's client authentication, and writes the refresh token into the document, changing no other field:",
      'a re-authorization, so a needs_reauthorization state clears. Register the redirect URI with the provider:',
      'http://127.0.0.1/callback (any port), or pin one with --port. Never prints a token; standard output carries',
      'the authorization URL alone with --no-browser, messages go to standard error.',
      WHERE_NOTE,
    ].join('\n'),
    options: {
      port: { type: 'string' },
      'redirect-uri': { type: 'string' },
      'no-browser': { type: 'boolean' },
      param: { type: 'string', multiple: true },
      timeout: { type: 'string' },
      ...WHERE_OPTIONS,
    },
    optionHelp: [
      ...WHERE_HELP,
      ['--port <port>', 'listen on this port (default: any free one): http://127.0.0.1:<port>/callback'],
      ['--redirect-uri <uri>', 'the redirect URI to send instead (loopback; any other one needs --port)'],
      ['--param <key=value>', 'add or replace an authorization parameter (repeatable), e.g. prompt=consent'],
      ['--no-browser', 'print the authorization URL on standard output instead of opening a browser'],
      ['--timeout <seconds>', 'how long to wait for the browser to come back (default 300)'],
    ],
    run: connect,
  },
  {
    name: 'status',
    summary: "each connector's health: ok, failing, needs_reauthorization, invalid",
    usage: 'token-vendor status [--dir <folder> | --prefix <prefix>] [--table <name>] [--json]',
    description: [
      'Reads every connector and its state item in the token table. For a folder: the table of the local mode',
      'serving it (its embedded DynamoDB, recorded in its state folder: TOKEN_VENDOR_STATE_DIR, else',
      '.token-vendor/state); AWS_ENDPOINT_URL_DYNAMODB, when set, wins. For --prefix: the deployed table.',
      WHERE_NOTE,
    ].join('\n'),
    options: { table: { type: 'string' }, json: { type: 'boolean' }, ...WHERE_OPTIONS },
    optionHelp: [
      ...WHERE_HELP,
      ['--table <name>', 'the token table (default: TOKEN_VENDOR_TABLE, else token-vendor-tokens)'],
      ['--json', 'print a JSON array'],
    ],
    run: status,
  },
];

const GROUPS: Readonly<Record<string, string>> = {
  token: 'vend tokens',
  connectors: 'manage connector documents',
};

const column = (rows: readonly (readonly [string, string])[], indent = '  ') => {
  const width = Math.max(...rows.map(([left]) => left.length));
  return rows.map(([left, right]) => `${indent}${left.padEnd(width)}  ${right}`).join('\n');
};

function topHelp(): string {
  return [
    'token-vendor: the token vendor from the command line',
    '',
    'Usage: token-vendor <command> [options]',
    '',
    'Commands:',
    column(COMMANDS.map((command) => [command.name, command.summary])),
    '',
    `Families: client-credentials, password, refresh-token, jwt-bearer. A connector is <family>/<connectorId>.`,
    "Run 'token-vendor <command> --help' for a command's options; 'token-vendor --version' for the version.",
    'Exit codes: 0 done, 1 the command failed (refused, invalid, unreachable), 2 wrong usage.',
    '',
  ].join('\n');
}

function groupHelp(group: string): string {
  const commands = COMMANDS.filter((command) => command.name.startsWith(`${group} `));
  return [
    `token-vendor ${group}: ${GROUPS[group]}`,
    '',
    `Usage: token-vendor ${group} <command> [options]`,
    '',
    'Commands:',
    column(commands.map((command) => [command.name, command.summary])),
    '',
    `Run 'token-vendor ${group} <command> --help' for a command's options.`,
    '',
  ].join('\n');
}

function commandHelp(command: Command): string {
  return [
    `Usage: ${command.usage}`,
    '',
    command.description,
    '',
    'Options:',
    column([...command.optionHelp, ['-h, --help', 'show this help']]),
    '',
  ].join('\n');
}

const wantsHelp = (args: readonly string[]) => args.length === 0 || args[0] === '--help' || args[0] === '-h';

/**
 * Runs one CLI command and returns its exit code; writes only through `io`, so tests run it in-process.
 *
 * @example
 * ```ts
 * const code = await main(['connectors', 'validate', 'crm.json'], {
 *   stdout: (text) => process.stdout.write(text),
 *   stderr: (text) => process.stderr.write(text),
 *   env: process.env,
 *   cwd: process.cwd(),
 * });
 * ```
 */
export async function main(argv: readonly string[], io: CliIo): Promise<number> {
  const [first, ...afterFirst] = argv;
  if (first === '--version' || first === '-v' || first === 'version') {
    io.stdout(`${VERSION}\n`);
    return EXIT.ok;
  }
  if (first === undefined || first === 'help' || first === '--help' || first === '-h') {
    (first === undefined ? io.stderr : io.stdout)(topHelp());
    return first === undefined ? EXIT.usage : EXIT.ok;
  }
  let command = COMMANDS.find((candidate) => candidate.name === first);
  let args = afterFirst;
  if (command === undefined && first in GROUPS) {
    if (wantsHelp(afterFirst)) {
      (afterFirst.length === 0 ? io.stderr : io.stdout)(groupHelp(first));
      return afterFirst.length === 0 ? EXIT.usage : EXIT.ok;
    }
    command = COMMANDS.find((candidate) => candidate.name === `${first} ${afterFirst[0]}`);
    args = afterFirst.slice(1);
    if (command === undefined) {
      io.stderr(`token-vendor: unknown command "${first} ${afterFirst[0]}"\n\n${groupHelp(first)}`);
      return EXIT.usage;
    }
  }
  if (command === undefined) {
    io.stderr(`token-vendor: unknown command "${first}"\n\n${topHelp()}`);
    return EXIT.usage;
  }

  let parsed: { values: Values; positionals: string[] };
  try {
    parsed = parseArgs({
      args: [...args],
      options: { ...command.options, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    }) as { values: Values; positionals: string[] };
  } catch (error) {
    io.stderr(`token-vendor ${command.name}: ${(error as Error).message}\n\n${commandHelp(command)}`);
    return EXIT.usage;
  }
  if (parsed.values.help === true) {
    io.stdout(commandHelp(command));
    return EXIT.ok;
  }
  try {
    await command.run(parsed.values, parsed.positionals, io);
    return EXIT.ok;
  } catch (error) {
    if (error instanceof UsageError) {
      io.stderr(`token-vendor ${command.name}: ${error.message}\n\n${commandHelp(command)}`);
      return EXIT.usage;
    }
    if (error instanceof CommandError) {
      io.stderr(`token-vendor ${command.name}: ${error.message}\n`);
      return EXIT.failed;
    }
    io.stderr(`token-vendor ${command.name}: unexpected failure: ${(error as Error).message ?? String(error)}\n`);
    return EXIT.failed;
  }
}

/** The process entry: `npx token-vendor …` (through `cli/token-vendor.mjs`) or `npm run cli -- …`. */
export async function run(): Promise<void> {
  process.exitCode = await main(process.argv.slice(2), {
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text),
    env: process.env,
    cwd: process.cwd(),
  });
}

const realpath = (path: string) => {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
};

// Run when started as a script (`tsx cli/main.ts`), not when imported (tests, the bin shim).
if (process.argv[1] !== undefined && realpath(process.argv[1]) === realpath(fileURLToPath(import.meta.url))) {
  await run();
}
