import { join } from 'node:path';
import { calculatePKCECodeChallenge, generateRandomCodeVerifier, generateRandomState } from 'oauth4webapi';
import { createHttpClient } from '../shared/adapters/http-client.ts';
import { KmsSignerAdapter } from '../shared/adapters/kms-signer.ts';
import { systemClock } from '../shared/adapters/system-clock.ts';
import { VendorError } from '../shared/core/errors.ts';
import { type ConnectorRef, refKey } from '../shared/core/identifiers.ts';
import { secretName } from '../shared/core/settings.ts';
import type { ConnectorDocument } from '../shared/domain/connector.ts';
import { refuseUrl } from '../shared/domain/network-policy.ts';
import {
  type AuthorizationResponse,
  buildAuthorizationUrl,
  FLOW_PARAMETERS,
  readAuthorizationResponse,
} from '../shared/domain/oauth/authorization-request.ts';
import { requestToken } from '../shared/domain/oauth/token-client.ts';
import { kmsClient, regionFrom } from './aws.ts';
import { openBrowser } from './browser.ts';
import {
  type CliIo,
  CommandError,
  describeTarget,
  inspectDocument,
  type OpenedTarget,
  onePositional,
  openTarget,
  parseRef,
  resolveTarget,
  storeFailure,
  str,
  type Target,
  UsageError,
  type Values,
} from './commands.ts';
import { listen, page, planRedirect, type Redirected, RedirectTimeout } from './loopback.ts';

/** Long enough to sign in with a second factor, short enough that a forgotten terminal does not listen all day. */
const DEFAULT_TIMEOUT_SECONDS = 300;
/** The code exchange: an authorization code is presented once, so its one attempt gets all of it. */
const EXCHANGE = { attemptTimeoutMs: 10_000, deadlineMs: 30_000, maxAttempts: 2 } as const;
const PARAM_NAME = /^[A-Za-z0-9_.~-]+$/;

/** `--param key=value`, repeatable: each key once, and never one the flow sets itself. */
export function parseParams(raw: Values[string]): Record<string, string> {
  const list = raw === undefined ? [] : Array.isArray(raw) ? raw : [String(raw)];
  const parameters: Record<string, string> = {};
  for (const item of list) {
    const equals = item.indexOf('=');
    const name = equals < 0 ? item : item.slice(0, equals);
    if (equals <= 0 || !PARAM_NAME.test(name)) throw new UsageError(`--param must be key=value, got "${item}"`);
    if (FLOW_PARAMETERS.has(name)) {
      throw new UsageError(
        `--param ${name}: set by connect itself${name === 'redirect_uri' ? ' (use --redirect-uri)' : ''}`,
      );
    }
    if (name in parameters) throw new UsageError(`--param ${name} given twice: a parameter is sent once`);
    parameters[name] = item.slice(equals + 1);
  }
  return parameters;
}

function parseTimeout(text: string | undefined): number {
  if (text === undefined) return DEFAULT_TIMEOUT_SECONDS;
  if (!/^\d{1,5}$/.test(text) || Number(text) < 1 || Number(text) > 86_400) {
    throw new UsageError('--timeout must be a whole number of seconds (1-86400)');
  }
  return Number(text);
}

const NOTHING_STORED = 'nothing was stored';

/** The operator's message for a redirect that is not a code, with the hint that usually fixes it. */
function refusalOf(response: Exclude<AuthorizationResponse, { ok: true }>): string {
  switch (response.problem) {
    case 'state':
      return `refused the redirect: ${response.description} (a stale or forged redirect); ${NOTHING_STORED}. Run connect again.`;
    case 'no_code':
      return `refused the redirect: ${response.description}; ${NOTHING_STORED}.`;
    case 'error': {
      const description = response.description === undefined ? '' : ` (${response.description})`;
      const hint =
        response.error === 'access_denied'
          ? ' The sign-in or the consent was refused.'
          : response.error === 'invalid_scope'
            ? ' Check authorizationScope and any --param scope.'
            : '';
      return `the authorization server answered ${response.error}${description}; ${NOTHING_STORED}.${hint}`;
    }
  }
}

function exchangeFailure(error: unknown, tokenUrl: string): CommandError {
  if (!(error instanceof VendorError))
    return new CommandError(`the code exchange at ${tokenUrl} failed`, { cause: error });
  const upstream = error.upstreamError === undefined ? '' : ` ${error.upstreamError}`;
  const hint =
    error.upstreamError === 'invalid_client'
      ? ' Check clientId, clientSecret and clientAuthentication.'
      : error.upstreamError === 'invalid_grant'
        ? ' The code was refused: expired, already used, or issued for another redirect URI or client.'
        : '';
  return new CommandError(
    `the code exchange at ${tokenUrl} failed: ${error.code}${upstream} (${error.message.replace(/\.$/, '')}); ` +
      `${NOTHING_STORED}.${hint}`,
    { cause: error },
  );
}

const where = (target: Target, ref: ConnectorRef) =>
  target.kind === 'dir' ? join(target.dir, ref.family, `${ref.connectorId}.json`) : secretName(target.prefix, ref);

async function readConnector(opened: OpenedTarget, target: Target, ref: ConnectorRef): Promise<ConnectorDocument> {
  const text = await opened.source.read(ref, { fresh: true }).catch((error: unknown) => {
    throw storeFailure(`reading ${refKey(ref)}`, error);
  });
  if (text === undefined) throw new CommandError(`no connector ${refKey(ref)} in ${describeTarget(target)}`);
  const inspection = inspectDocument(text, ref, target.kind === 'dir' ? 'local' : 'aws');
  if (!inspection.ok) throw new CommandError(`${refKey(ref)} is invalid: ${inspection.problem}`);
  const { document } = inspection.connector;
  if (document.authorizationUrl === undefined) {
    throw new CommandError(
      `${refKey(ref)} has no authorizationUrl: add the provider's authorization endpoint (and authorizationScope) ` +
        'to the document first',
    );
  }
  const refusal = refuseUrl(new URL(document.authorizationUrl), { allowLoopback: true, allowPrivate: true });
  if (refusal !== undefined) throw new CommandError(`authorizationUrl ${refusal}`);
  return document;
}

/** Answers the browser, then fails the command with the same problem. */
async function fail(redirected: Redirected, message: string, error?: unknown): Promise<never> {
  await redirected.respond(400, page('Authorization failed', 'token-vendor connect stored nothing: see the terminal.'));
  throw new CommandError(message, error === undefined ? undefined : { cause: error });
}

/**
 * `token-vendor connect refresh-token/<id>` (CONTRACT §5): the authorization-code flow with PKCE on a loopback
 * redirect (RFC 8252), then the refresh token written into the document as a re-authorization (CONTRACT §2).
 * Standard output carries the authorization URL alone (with `--no-browser`); every message goes to standard error,
 * and no token is ever printed.
 */
export async function connect(values: Values, positionals: readonly string[], io: CliIo): Promise<void> {
  const ref = parseRef(onePositional(positionals, 'refresh-token/<connectorId>'));
  if (ref.family !== 'refresh-token') {
    throw new UsageError(`connect obtains refresh tokens: it applies to refresh-token/<id>, not ${ref.family}/`);
  }
  const parameters = parseParams(values.param);
  const timeoutSeconds = parseTimeout(str(values, 'timeout'));
  const plan = planRedirect(str(values, 'redirect-uri'), str(values, 'port'));
  // The connector must exist already: where it is read from is where its new refresh token goes.
  const target = await resolveTarget(values, io, 'read');

  const opened = openTarget(target, values, io);
  try {
    const document = await readConnector(opened, target, ref);
    const listener = await listen(plan);
    try {
      const codeVerifier = generateRandomCodeVerifier();
      const state = generateRandomState();
      const url = buildAuthorizationUrl(document, {
        redirectUri: listener.redirectUri,
        state,
        codeChallenge: await calculatePKCECodeChallenge(codeVerifier),
        parameters,
      });
      if (values['no-browser'] === true) {
        io.stdout(`${url}\n`);
        io.stderr(`Open the URL above in a browser. Waiting up to ${timeoutSeconds} s on ${listener.redirectUri}\n`);
      } else {
        io.stderr(`Opening the browser; if it does not open, visit:\n\n  ${url}\n\n`);
        await openBrowser(url, io.env).catch((error: unknown) => {
          io.stderr(`(could not start a browser: ${(error as Error).message}; open the URL yourself)\n`);
        });
        io.stderr(`Waiting up to ${timeoutSeconds} s on ${listener.redirectUri}\n`);
      }

      let redirected: Redirected;
      try {
        redirected = await listener.redirected(timeoutSeconds * 1000);
      } catch (error) {
        if (!(error instanceof RedirectTimeout)) throw error;
        throw new CommandError(
          `no redirect reached ${listener.redirectUri} within ${timeoutSeconds} s; ${NOTHING_STORED}. ` +
            'Sign in sooner or raise --timeout; check that the provider has this redirect URI registered.',
        );
      }
      const answer = readAuthorizationResponse(redirected.query, state);
      if (!answer.ok) return await fail(redirected, refusalOf(answer));

      const http = createHttpClient({ allowLoopback: target.kind === 'dir', allowPrivate: true });
      let refreshToken: string | undefined;
      try {
        // A private_key_jwt connector whose key is in KMS signs its client assertion here as the functions do.
        const client =
          document.signingKey?.kmsKeyId === undefined
            ? undefined
            : kmsClient(io.env, regionFrom(io.env, str(values, 'region')));
        const kms = client === undefined ? undefined : new KmsSignerAdapter(client);
        const { tokens } = await requestToken({ http, clock: systemClock, kms, ...EXCHANGE }, document, {
          scope: undefined,
          authorizationCode: { code: answer.code, codeVerifier, redirectUri: listener.redirectUri },
        }).finally(() => client?.destroy());
        refreshToken = tokens.refreshToken;
      } catch (error) {
        const failure = exchangeFailure(error, document.tokenUrl);
        return await fail(redirected, failure.message, error);
      }
      if (refreshToken === undefined) {
        return await fail(
          redirected,
          `the token server's answer has no refresh token; ${NOTHING_STORED}. Most providers issue one only when ` +
            'asked: add offline_access to authorizationScope (OpenID Connect, Microsoft), or pass ' +
            '--param access_type=offline --param prompt=consent (Google), then run connect again.',
        );
      }
      try {
        // An operator's authorization replaces whatever the document holds; every other field stays as it is now.
        await opened.source.writeRefreshToken(ref, refreshToken, () => true);
      } catch (error) {
        return await fail(
          redirected,
          storeFailure(`storing the refresh token in ${where(target, ref)}`, error).message,
        );
      }
      await redirected.respond(
        200,
        page('Connected', `token-vendor stored a new refresh token for ${refKey(ref)}. You can close this window.`),
      );
      io.stderr(
        `Stored a new refresh token for ${refKey(ref)} in ${where(target, ref)}. The vendor continues from it ` +
          `(a re-authorization: a needs_reauthorization state clears)${target.kind === 'secrets' ? ' within TOKEN_VENDOR_SECRET_MAX_AGE_SECONDS (30 s)' : ''}.\n`,
      );
    } finally {
      await listener.close();
    }
  } finally {
    opened.close();
  }
}
