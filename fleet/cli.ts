#!/usr/bin/env node
/**
 * The fleet tool's command line: parses arguments, picks the credential and the progress display, calls a command,
 * prints its summary, and maps errors to exit codes (errors.ts). Commands are typed functions that throw; only this
 * file touches process.argv, process.env, the terminal and the exit code.
 */
import { readFile, stat } from 'node:fs/promises';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { SUPPORTED_ALGORITHMS, isHostName } from '../functions/core/policy.js';
import { isRegistrationId } from '../functions/core/request.js';
import { readSettingsFile } from '../local-host/settings.js';
import { isEntryPoint } from '../sample-device/entry-point.js';
import { explain } from './commands/explain.js';
import { DEFAULT_CONCURRENCY, importFleet, type ImportSummary } from './commands/import.js';
import { formatExplain } from './explain-format.js';
import { chooseCredential, CREDENTIAL_KINDS, type CredentialKind } from './credential.js';
import { EXIT_CODE_SUMMARIES, EXIT_CODES, FleetError, usageError } from './errors.js';
import { formatOf } from './manifest.js';
import { plainProgress, ttyProgress } from './progress.js';
import { fileReport } from './report.js';
import { DOCUMENTED_WRITE_LIMIT, type WriteLimit } from './throttle.js';
import { createSecretClientVault } from './vault.js';

const PROGRAM = 'fleet';

type Options = NonNullable<ParseArgsConfig['options']>;

const IMPORT_OPTIONS: Options = {
  vault: { type: 'string' },
  'vault-url': { type: 'string' },
  manifest: { type: 'string' },
  format: { type: 'string' },
  report: { type: 'string' },
  replace: { type: 'boolean' },
  'skip-invalid': { type: 'boolean' },
  'dry-run': { type: 'boolean' },
  'write-limit': { type: 'string' },
  concurrency: { type: 'string' },
  algorithms: { type: 'string' },
  credential: { type: 'string' },
  'client-id': { type: 'string' },
  'disable-challenge-resource-verification': { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
};

/** Exit codes only `explain` ends with. */
const EXPLAIN_ONLY_EXITS = ['refused', 'settings'] as const;

const IMPORT_USAGE = `${PROGRAM} import (--vault NAME | --vault-url URL) --manifest FILE [options]`;

const IMPORT_HELP = `Imports every device's public key from a manifest into Key Vault, under the secret names the webhook looks
up, as fast as the vault allows and never faster. Safe to run again: rows already stored are skipped, so a run cut
off by Ctrl-C, a crash or kill -9 is finished by running the same command again. Format: docs/fleet.md.

Options:
  --vault NAME              the Key Vault (https://NAME.vault.azure.net)
  --vault-url URL           the vault's URL instead (another cloud, or a local stand-in)
  --manifest FILE           CSV with a header, or JSON Lines (.csv / .jsonl)
  --format csv|jsonl        when the extension does not say
  --report FILE             JSON Lines report, one line per row (default: <manifest>.report.jsonl)
  --dry-run                 check every row and list the vault; print what would be created, updated,
                            left unchanged or refused; write nothing
  --skip-invalid            import the valid rows even if some rows are bad (default: any bad row stops
                            the run before anything is written)
  --replace                 overwrite a stored key that differs (key rotation), or its tags/enabled state
  --write-limit N[/SECONDS] secret writes allowed per window (default ${DOCUMENTED_WRITE_LIMIT.writes}/${DOCUMENTED_WRITE_LIMIT.windowMs / 1000}, Key Vault's
                            documented per-vault limit); lower it when other writers share the vault
  --concurrency N           writes in flight at most (default ${DEFAULT_CONCURRENCY}, 1-64)
  --algorithms LIST         the webhook's JWT_ALGORITHMS (default ES256: P-256 keys only)
  --credential KIND         ${CREDENTIAL_KINDS.join(' | ')} (default auto: a managed identity when
                            IDENTITY_ENDPOINT is set, workload identity when AZURE_FEDERATED_TOKEN_FILE is
                            set, otherwise the signed-in az user)
  --client-id ID            a user-assigned managed identity / workload identity client id
  --disable-challenge-resource-verification
                            for a vault whose auth challenge names another host (a local stand-in)
  -h, --help                this help

The identity needs "Key Vault Secrets Officer" on the vault. No key material is ever printed: rows are named by
line, id and public-key SHA-256.

Exit codes:
${Object.entries(EXIT_CODES)
  .filter(([code]) => !(EXPLAIN_ONLY_EXITS as readonly string[]).includes(code))
  .map(([code, exit]) => `  ${String(exit).padStart(3)}  ${code.padEnd(18)} ${EXIT_CODE_SUMMARIES[code as keyof typeof EXIT_CODES]}`)
  .join('\n')}`;

const EXPLAIN_OPTIONS: Options = {
  'token-file': { type: 'string' },
  group: { type: 'string' },
  'linked-hub': { type: 'string', multiple: true },
  'current-hub': { type: 'string' },
  settings: { type: 'string' },
  at: { type: 'string' },
  credential: { type: 'string' },
  'client-id': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
};

const EXPLAIN_USAGE = `${PROGRAM} explain <registrationId> [--token-file FILE|-] [--group ID] [--linked-hub HOST]... [options]`;

/** The codes explain ends with, in the order its help lists them, with what each means for explain. */
const EXPLAIN_EXITS = {
  ok: 'the webhook would admit the device (without a token: the entry that decides is enabled)',
  refused: 'the webhook would refuse the device (without a token: no entry, or a disabled or unusable one)',
  settings: "the function's settings cannot be loaded (the message names the setting)",
  usage: EXIT_CODE_SUMMARIES.usage,
  vault_unavailable: 'the key store could not be read (network, TLS, 5xx, timeout)',
  access_denied: 'no credential, or no right to read the secret',
  internal: EXIT_CODE_SUMMARIES.internal,
} as const satisfies Partial<Record<keyof typeof EXIT_CODES, string>>;

const EXPLAIN_HELP = `Says why the webhook refuses (or admits) one device: reads the device's key entry from the function's key
store (key folder, fleet key or Key Vault) with the function's own settings and, given the device's token, runs the
webhook's own decision offline and prints each check in order, the code the webhook would answer and what to do about
it. Without a token it reports what the store holds for the id. It never prints the token or a key, and never records
the token's jti (the replay store is not opened). Details: docs/operations.md.

Options:
  --token-file FILE|-       the device's token (the JWT, or its DPS payload {"jwt": "..."}); - reads stdin.
                            Never give a token as an argument: other users can read a command line.
  --group ID                the enrollment group the device registers through (default: individual enrollment)
  --linked-hub HOST         a hub DPS links to the enrollment (repeatable; default IOT_HUB_HOSTNAME)
  --current-hub HOST        the hub a re-registering device is on
  --settings FILE           the function's local.settings.json (its Values; the environment wins, as in Core
                            Tools); without it, the settings are read from the environment alone
  --at TIME                 decide at this instant (ISO 8601, or seconds since the epoch; default now)
  --credential KIND         ${CREDENTIAL_KINDS.join(' | ')}, for a Key Vault (default auto, as for import)
  --client-id ID            a user-assigned managed identity / workload identity client id
  -h, --help                this help

The identity needs "Key Vault Secrets User" on the vault (reading, as the function does).

Exit codes:
${Object.entries(EXPLAIN_EXITS).map(([code, meaning]) => `  ${String(EXIT_CODES[code as keyof typeof EXIT_CODES]).padStart(3)}  ${code.padEnd(18)} ${meaning}`).join('\n')}`;

function toolHelp(): string {
  return `${PROGRAM}: move a fleet of devices' public keys into the webhook's Key Vault, and explain a refusal

Usage: ${PROGRAM} <command> [options]

Commands:
  import   import public keys from a manifest (CSV or JSON Lines) into Key Vault
  explain  say why the webhook refuses one device: each check, its code and what to do

Run \`${PROGRAM} import --help\` or \`${PROGRAM} explain --help\` for options and exit codes.`;
}

export interface CliIo {
  readonly stdout: (text: string) => void;
  /** Progress and per-row problems; written as given (lines end in \\n, the bar redraws with \\r). */
  readonly stderr: (text: string) => void;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Whether stderr is a terminal (a progress bar) or a log (a plain line every few seconds). */
  readonly isTTY?: boolean;
  readonly columns?: number;
  readonly signal?: AbortSignal;
  /** All of standard input, for `explain --token-file -`. */
  readonly readStdin?: () => Promise<string>;
}

type Values = Record<string, string | boolean | string[] | undefined>;

function parse(args: string[], command = 'import', options: Options = IMPORT_OPTIONS): { values: Values; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({ args, options, strict: true, allowPositionals: command === 'explain' });
    return { values: values as Values, positionals };
  } catch (error) {
    const code = (error as { code?: string }).code;
    const flag = /'(-{1,2}[A-Za-z0-9-]+)/.exec((error as Error).message)?.[1];
    // The flag is quoted only when it is a flag: an unknown "option" could be a pasted token.
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && flag !== undefined && flag.length <= 40) throw usageError(flag, `is not an option of \`${command}\` (see \`${PROGRAM} ${command} --help\`)`);
    if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && flag !== undefined && flag.length <= 40) {
      throw usageError(flag, options[flag.replace(/^-+/, '')]?.type === 'boolean' ? 'takes no value' : 'needs a value');
    }
    if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') throw new FleetError('usage', `\`${command}\` takes only --options; found a stray argument`);
    throw new FleetError('usage', `cannot parse the arguments of \`${command}\``);
  }
}

const str = (values: Values, flag: string): string | undefined => (typeof values[flag] === 'string' ? (values[flag] as string) : undefined);

function vaultUrl(values: Values): string {
  const name = str(values, 'vault');
  const url = str(values, 'vault-url');
  if (name !== undefined && url !== undefined) throw usageError('--vault', 'and --vault-url: give one');
  if (name !== undefined) {
    // Vault names: 3-24 of letters, digits and -, starting with a letter (as scripts/lib.sh checks).
    if (!/^[A-Za-z][A-Za-z0-9-]{1,22}[A-Za-z0-9]$/.test(name)) throw usageError('--vault', `"${name.slice(0, 30)}" is not a vault name (3-24 letters, digits and -, starting with a letter)`);
    return `https://${name.toLowerCase()}.vault.azure.net`;
  }
  if (url === undefined) throw usageError('--vault', 'is required (or --vault-url)');
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw usageError('--vault-url', 'is not a URL');
  }
  if (parsed.protocol !== 'https:') throw usageError('--vault-url', 'must be an https:// URL');
  return parsed.origin;
}

/** N or N/SECONDS; only ever lowers the documented limit (300 per 10 s: 30 writes a second, 300 in any window). */
function writeLimit(values: Values): WriteLimit {
  const raw = str(values, 'write-limit');
  if (raw === undefined) return DOCUMENTED_WRITE_LIMIT;
  const match = /^(\d+)(?:\/(\d+(?:\.\d+)?))?$/.exec(raw.trim());
  if (match === null) throw usageError('--write-limit', `must be N or N/SECONDS (e.g. 150/10), got "${raw.slice(0, 20)}"`);
  const writes = Number(match[1]);
  const windowMs = match[2] === undefined ? DOCUMENTED_WRITE_LIMIT.windowMs : Number(match[2]) * 1000;
  if (writes < 1 || windowMs <= 0) throw usageError('--write-limit', 'must allow at least one write in a window longer than 0 s');
  const documented = DOCUMENTED_WRITE_LIMIT.writes / DOCUMENTED_WRITE_LIMIT.windowMs;
  if (writes > DOCUMENTED_WRITE_LIMIT.writes || writes / windowMs > documented) {
    throw usageError('--write-limit', `${raw} is above Key Vault's limit of ${DOCUMENTED_WRITE_LIMIT.writes} per ${DOCUMENTED_WRITE_LIMIT.windowMs / 1000} s; it can only lower it`);
  }
  return { writes, windowMs };
}

function concurrency(values: Values): number {
  const raw = str(values, 'concurrency');
  if (raw === undefined) return DEFAULT_CONCURRENCY;
  if (!/^\d+$/.test(raw) || Number(raw) < 1 || Number(raw) > 64) throw usageError('--concurrency', 'must be a whole number from 1 to 64');
  return Number(raw);
}

function algorithms(values: Values): string[] {
  const raw = str(values, 'algorithms') ?? 'ES256';
  const list = raw.split(',').map((a) => a.trim()).filter((a) => a !== '');
  for (const alg of list) {
    if (!(SUPPORTED_ALGORITHMS as readonly string[]).includes(alg)) throw usageError('--algorithms', `"${alg.slice(0, 20)}" is not one of ${SUPPORTED_ALGORITHMS.join(', ')}`);
  }
  if (list.length === 0) throw usageError('--algorithms', 'must name at least one algorithm');
  return list;
}

function formatSummary(s: ImportSummary, report: string): string {
  const lines = s.dryRun
    ? [
        `dry run: ${s.rows} rows: would create ${s.wouldCreate}, would update ${s.wouldUpdate}, unchanged ${s.unchanged}, conflicts ${s.conflicts}, refused ${s.refused}; nothing written`,
        `  vault: ${s.vault.listCalls} list calls`,
      ]
    : [
        `${s.interrupted ? 'stopped' : 'done'}: ${s.rows} rows: created ${s.created}, updated ${s.updated}, unchanged ${s.unchanged}, refused ${s.refused}, conflicts ${s.conflicts}, failed ${s.failed}${s.skipped > 0 ? `, not attempted ${s.skipped}` : ''}`,
        `  vault: ${s.vault.listCalls} list calls, ${s.vault.writes} writes (${s.vault.writeAttempts - s.vault.writes} retried: ${s.vault.throttled} answered 429, ${s.vault.unavailable} 5xx or no answer), ${s.writesPerSecond.toFixed(1)} writes/s (limit ${s.limitPerSecond.toFixed(1)}/s)`,
      ];
  lines.push(`  report: ${report}`);
  if (s.conflicts > 0 && !s.dryRun) lines.push('  conflicts were left alone: --replace overwrites them (key rotation)');
  if (s.failed > 0 || s.interrupted) lines.push('  run the same command again to finish: rows already stored are skipped');
  return lines.join('\n');
}

export async function main(argv: readonly string[], io: CliIo): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    io.stdout(toolHelp());
    return command === undefined ? EXIT_CODES.usage : 0;
  }
  if (command === 'explain') return explainMain(rest, io);
  if (command !== 'import') {
    io.stderr(`${PROGRAM}: error: unknown command "${command.slice(0, 40)}"\n\n${toolHelp()}\n`);
    return EXIT_CODES.usage;
  }
  try {
    if (rest.includes('--help') || rest.includes('-h')) {
      io.stdout(`Usage: ${IMPORT_USAGE}\n\n${IMPORT_HELP}`);
      return 0;
    }
    const { values } = parse(rest);
    const manifest = str(values, 'manifest');
    if (manifest === undefined) throw usageError('--manifest', 'is required');
    const format = str(values, 'format');
    if (format !== undefined && format !== 'csv' && format !== 'jsonl') throw usageError('--format', 'must be csv or jsonl');
    const url = vaultUrl(values);
    const kind = str(values, 'credential') ?? 'auto';
    if (!(CREDENTIAL_KINDS as readonly string[]).includes(kind)) throw usageError('--credential', `must be one of ${CREDENTIAL_KINDS.join(', ')}`);
    const limit = writeLimit(values);
    const options = { concurrency: concurrency(values), algorithms: algorithms(values), format: formatOf(manifest, format) };
    const reportPath = str(values, 'report') ?? `${manifest}.report.jsonl`;
    const report = fileReport(reportPath);
    const chosen = chooseCredential(kind as CredentialKind, io.env, str(values, 'client-id'));
    const vault = createSecretClientVault({
      url,
      credential: chosen.credential,
      disableChallengeResourceVerification: values['disable-challenge-resource-verification'] === true,
    });
    const dryRun = values['dry-run'] === true;
    io.stderr(`${PROGRAM} import${dryRun ? ' (dry run)' : ''}: ${manifest} -> ${url} as ${chosen.description}; at most ${limit.writes} writes per ${limit.windowMs / 1000} s, ${options.concurrency} at once\n`);
    const summary = await importFleet({
      manifest,
      vault,
      ...options,
      writeLimit: limit,
      replace: values.replace === true,
      skipInvalid: values['skip-invalid'] === true,
      dryRun,
      report,
      progress: io.isTTY === true ? ttyProgress(io.stderr, io.columns ?? 80) : plainProgress(io.stderr),
      // On a terminal the line first clears the progress bar it would otherwise be appended to.
      log: (line) => (dryRun ? io.stdout(line) : io.stderr(`${io.isTTY === true ? '\r\x1b[K' : ''}${line}\n`)),
      ...(io.signal !== undefined && { signal: io.signal }),
    });
    io.stdout(formatSummary(summary, reportPath));
    if (summary.interrupted) return EXIT_CODES.interrupted;
    if (summary.failed > 0 || summary.skipped > 0) return EXIT_CODES.incomplete;
    if (summary.conflicts > 0) return EXIT_CODES.conflicts;
    return EXIT_CODES.ok;
  } catch (error) {
    const failure = error instanceof FleetError ? error : new FleetError('internal', `unexpected ${(error as Error)?.name ?? 'error'}`);
    const lines = [`${PROGRAM} import: error: ${failure.message}`];
    if (failure.hint !== undefined) lines.push(`  hint: ${failure.hint}`);
    if (failure.code === 'usage') lines.push(`  usage: ${IMPORT_USAGE}`);
    io.stderr(`${lines.join('\n')}\n`);
    return failure.exitCode;
  }
}

// A token is a few KB; a DPS payload around it not much more.
const MAX_TOKEN_FILE_BYTES = 64 * 1024;
// A compact JWS's header is base64url JSON, so it starts with eyJ ('{"'); the shape of a token, not a registration id.
const LOOKS_LIKE_JWT = /^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*$/;

/** The token from --token-file (or stdin): the compact JWT, or the DPS payload {"jwt": "..."} around it. */
async function readToken(source: string, io: CliIo): Promise<string> {
  let text: string;
  if (source === '-') {
    if (io.readStdin === undefined) throw usageError('--token-file -', 'needs standard input');
    text = await io.readStdin();
  } else {
    const info = await stat(source).catch((error: NodeJS.ErrnoException) => {
      throw usageError('--token-file', `cannot be read (${error.code ?? 'error'})`);
    });
    if (!info.isFile()) throw usageError('--token-file', 'is not a file');
    if (info.size > MAX_TOKEN_FILE_BYTES) throw usageError('--token-file', `is over ${MAX_TOKEN_FILE_BYTES / 1024} KiB: not a token`);
    text = await readFile(source, 'utf8');
  }
  if (text.length > MAX_TOKEN_FILE_BYTES) throw usageError('--token-file', `holds over ${MAX_TOKEN_FILE_BYTES / 1024} KiB: not a token`);
  const trimmed = text.trim();
  if (trimmed === '') throw usageError('--token-file', 'is empty');
  if (!trimmed.startsWith('{')) return trimmed;
  let payload: unknown;
  try {
    payload = JSON.parse(trimmed);
  } catch {
    throw usageError('--token-file', 'starts with { but is not JSON (give the JWT, or the payload {"jwt": "..."})');
  }
  const jwt = (payload as { jwt?: unknown } | null)?.jwt;
  if (typeof jwt !== 'string') throw usageError('--token-file', 'holds JSON without a "jwt" string (give the JWT, or the payload {"jwt": "..."})');
  return jwt.trim();
}

/** --at: ISO 8601 (with a time zone, or taken as UTC by Date) or whole seconds since the epoch. */
function instant(raw: string): number {
  const ms = /^\d{1,12}$/.test(raw) ? Number(raw) * 1000 : /^\d{4}-\d{2}-\d{2}/.test(raw) ? Date.parse(raw) : Number.NaN;
  if (!Number.isFinite(ms)) throw usageError('--at', `must be an ISO 8601 time (2026-11-21T12:00:00Z) or seconds since the epoch, got "${raw.slice(0, 40)}"`);
  return ms;
}

function hostOption(flag: string, value: string): string {
  if (!isHostName(value)) throw usageError(flag, `"${value.slice(0, 60)}" is not a host name (such as my-hub.azure-devices.net)`);
  return value;
}

/** Exit code for the webhook's answer: 0 assigned, 8 refused; a store fault as import names it. */
function exitOfAnswer(status: number, code: string): number {
  if (status === 200) return EXIT_CODES.ok;
  if (code === 'key_store_access_denied') return EXIT_CODES.access_denied;
  if (code === 'key_store_unavailable') return EXIT_CODES.vault_unavailable;
  if (status < 429) return EXIT_CODES.refused;
  return EXIT_CODES.internal;
}

async function explainMain(args: string[], io: CliIo): Promise<number> {
  try {
    if (args.includes('--help') || args.includes('-h')) {
      io.stdout(`Usage: ${EXPLAIN_USAGE}\n\n${EXPLAIN_HELP}`);
      return 0;
    }
    // Before anything quotes an argument: a token pasted anywhere on the command line is refused, never echoed.
    if (args.some((arg) => LOOKS_LIKE_JWT.test(arg.replace(/^--?[A-Za-z-]+=/, '')))) {
      throw new FleetError('usage', 'a token is never taken as an argument (other users can read a command line); put it in a file and give --token-file FILE, or --token-file - for stdin');
    }
    const { values, positionals } = parse(args, 'explain', EXPLAIN_OPTIONS);
    if (positionals.length !== 1) throw new FleetError('usage', '`explain` takes exactly one registration id');
    const registrationId = positionals[0]!;
    if (!isRegistrationId(registrationId)) throw usageError('<registrationId>', 'must be 1-128 of A-Z a-z 0-9 - . _ : ending in a letter, digit or -');
    const group = str(values, 'group');
    if (group !== undefined && !isRegistrationId(group)) throw usageError('--group', 'must be 1-128 of A-Z a-z 0-9 - . _ : ending in a letter, digit or -');
    const linkedHubs = ((values['linked-hub'] as string[] | undefined) ?? []).map((h) => hostOption('--linked-hub', h));
    const currentHub = str(values, 'current-hub');
    if (currentHub !== undefined) hostOption('--current-hub', currentHub);
    const at = str(values, 'at');
    const kind = str(values, 'credential') ?? 'auto';
    if (!(CREDENTIAL_KINDS as readonly string[]).includes(kind)) throw usageError('--credential', `must be one of ${CREDENTIAL_KINDS.join(', ')}`);
    const settingsFile = str(values, 'settings');
    let env = io.env;
    if (settingsFile !== undefined) {
      // As Core Tools assembles them: the file's Values, the environment winning (local-host/settings.ts).
      const fromFile = await readSettingsFile(settingsFile).catch((error: unknown) => {
        if (error instanceof TypeError) throw new FleetError('settings', error.message);
        throw new FleetError('settings', `--settings ${settingsFile.slice(0, 200)} cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
      });
      env = { ...fromFile, ...io.env };
    }
    const tokenFile = str(values, 'token-file');
    const token = tokenFile === undefined ? undefined : await readToken(tokenFile, io);
    const result = await explain({
      env,
      registrationId,
      ...(group !== undefined && { group }),
      ...(linkedHubs.length > 0 && { linkedHubs }),
      ...(currentHub !== undefined && { currentHub }),
      ...(token !== undefined && { token }),
      ...(at !== undefined && { atMs: instant(at) }),
      credential: () => chooseCredential(kind as CredentialKind, io.env, str(values, 'client-id')).credential,
    });
    io.stdout(formatExplain(result));
    if (result.decision !== undefined) return exitOfAnswer(result.decision.status, result.decision.code);
    return result.verdict === undefined ? EXIT_CODES.ok : EXIT_CODES.refused;
  } catch (error) {
    const failure = error instanceof FleetError ? error : new FleetError('internal', `unexpected ${(error as Error)?.name ?? 'error'}`);
    const lines = [`${PROGRAM} explain: error: ${failure.message}`];
    if (failure.hint !== undefined) lines.push(`  hint: ${failure.hint}`);
    if (failure.code === 'settings' && !args.includes('--settings') && !args.some((a) => a.startsWith('--settings='))) {
      lines.push('  hint: without --settings, the settings are read from the environment alone; give --settings local.settings.json');
    }
    if (failure.code === 'usage') lines.push(`  usage: ${EXPLAIN_USAGE}`);
    io.stderr(`${lines.join('\n')}\n`);
    return failure.exitCode;
  }
}

async function readAllStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    size += chunk.length;
    // Stop reading past the limit: readToken refuses what is this long.
    if (size > MAX_TOKEN_FILE_BYTES) return Buffer.concat([...chunks, chunk]).toString('utf8');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

if (isEntryPoint(import.meta.url)) {
  const controller = new AbortController();
  // First Ctrl-C stops taking new rows and lets writes in flight end (exit 130); a second one kills at once.
  process.once('SIGINT', () => {
    controller.abort(new FleetError('interrupted', 'interrupted'));
    process.once('SIGINT', () => process.exit(EXIT_CODES.interrupted));
  });
  const code = await main(process.argv.slice(2), {
    stdout: (text) => process.stdout.write(`${text}\n`),
    stderr: (text) => process.stderr.write(text),
    env: process.env,
    isTTY: process.stderr.isTTY === true,
    columns: process.stderr.columns ?? 80,
    signal: controller.signal,
    readStdin: readAllStdin,
  });
  process.exitCode = code;
  setTimeout(() => process.exit(code), 2000).unref();
}
