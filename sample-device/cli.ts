#!/usr/bin/env node
/**
 * The sample device's command line: parses arguments, calls a command, prints its result, and maps errors to exit
 * codes (sample-device/errors.ts). Commands are plain async functions that throw; only this file touches
 * process.argv, process.env and the exit code.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { keygen } from './commands/keygen.js';
import { register, DEFAULT_TIMEOUT_MS, type RegisterResult } from './commands/register.js';
import { token } from './commands/token.js';
import { connect, DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_TELEMETRY_INTERVAL_SECONDS, DEFAULT_TWIN_TIMEOUT_MS, type ConnectOptions, type ConnectResult } from './commands/connect.js';
import { EXIT_CODE_SUMMARIES, EXIT_CODES, SampleDeviceError, usageError, type SampleDeviceErrorCode } from './errors.js';
import { DEFAULT_LIFETIME_SECONDS, MAX_LIFETIME_SECONDS } from './jwt.js';
import { DEFAULT_DPS_HOST, TRANSPORTS, type TransportKind } from './transport.js';
import { isEntryPoint } from './entry-point.js';

const PROGRAM = 'sample-device';

type Options = NonNullable<ParseArgsConfig['options']>;

interface CommandSpec {
  readonly summary: string;
  readonly usage: string;
  readonly options: Options;
  readonly help: string;
}

const HELP_OPTION: Options = { help: { type: 'boolean', short: 'h' } };

const REGISTER_OPTIONS: Options = {
  'registration-id': { type: 'string' },
  'id-scope': { type: 'string' },
  'private-key': { type: 'string' },
  'symmetric-key': { type: 'string' },
  'group-key': { type: 'string' },
  host: { type: 'string' },
  transport: { type: 'string' },
  ca: { type: 'string' },
  lifetime: { type: 'string' },
  kid: { type: 'string' },
  timeout: { type: 'string' },
  json: { type: 'boolean' },
};

const CONNECT_OPTIONS: Options = {
  'hub-host': { type: 'string' },
  count: { type: 'string' },
  'twin-timeout': { type: 'string' },
  'connect-timeout': { type: 'string' },
};

const CONNECT_HELP = `  --hub-host H[:PORT]     connect here instead of the hub's own name (the connection string's GatewayHostName);
                          the local hub: localhost:8884. Without it the device connects to the hub itself.
  --count N               telemetry messages to send (default: until Ctrl-C)
  --connect-timeout S     give up connecting after S seconds (default ${DEFAULT_CONNECT_TIMEOUT_MS / 1000}), exit 11
  --twin-timeout S        give up waiting for the twin after S seconds (default ${DEFAULT_TWIN_TIMEOUT_MS / 1000}), exit 13`;

const COMMANDS = {
  keygen: {
    summary: 'create the device P-256 key pair (PEM files)',
    usage: `${PROGRAM} keygen --out-dir DIR [--name NAME]`,
    options: { 'out-dir': { type: 'string' }, name: { type: 'string' }, ...HELP_OPTION },
    help: `Creates a P-256 key pair for ES256 tokens:
  <NAME>.key.pem  private key, PKCS#8, mode 0600: stays on the device
  <NAME>.pub.pem  public key, SPKI: goes to the webhook's key store (DEVICE_KEYS_DIR/<registration id>.pem)
and prints the public key's JWK thumbprint (RFC 7638), a good --kid. Never overwrites an existing file.

Options:
  --out-dir DIR   directory for the files (created, mode 0700, if missing)
  --name NAME     file name stem, usually the registration id (default: device)
  -h, --help      show this help`,
  },
  token: {
    summary: 'print a fresh registration token and its decoded header and claims',
    usage: `${PROGRAM} token --private-key FILE --registration-id ID [--id-scope S] [--host H] [--lifetime ${DEFAULT_LIFETIME_SECONDS}] [--kid K]`,
    options: {
      'private-key': { type: 'string' },
      'registration-id': { type: 'string' },
      'id-scope': { type: 'string' },
      host: { type: 'string' },
      lifetime: { type: 'string' },
      kid: { type: 'string' },
      jti: { type: 'string' },
      iat: { type: 'string' },
      ...HELP_OPTION,
    },
    help: `Signs the ES256 token \`register\` would send and prints it (first line), then its header and claims.
This command exists to inspect tokens: what it prints is a working credential until it expires.

Options:
  --private-key FILE      the device's private key (PKCS#8 or SEC1 PEM)
  --registration-id ID    goes into sub and registration_id
  --id-scope S            goes into aud and id_scope (the webhook may require it)
  --host H                goes into provisioning_host
  --lifetime SECONDS      exp - iat, 1..${MAX_LIFETIME_SECONDS} (default ${DEFAULT_LIFETIME_SECONDS})
  --kid=K                 key id for the header (e.g. the thumbprint keygen printed; the = form
                          is needed when it starts with -, as a base64url thumbprint can)
  --jti ID                a fixed jti instead of a random UUID (test vectors; a replay store refuses a reused one)
  --iat SECONDS           a fixed iat (epoch seconds) instead of now (test vectors)
  -h, --help              show this help`,
  },
  register: {
    summary: 'register with DPS, presenting a signed token to the webhook',
    usage: `${PROGRAM} register --registration-id ID --id-scope S --private-key FILE (--symmetric-key KEY | --group-key KEY) [options]`,
    options: { ...REGISTER_OPTIONS, ...HELP_OPTION },
    help: `Signs a short-lived ES256 token, sends it as the provisioning payload {"jwt": ...} with the official Azure IoT
SDK (symmetric-key attestation), and prints the assigned hub, device id and the payload the webhook returned.

Options:
  --registration-id ID    the device's registration id
  --id-scope S            the DPS ID scope
  --private-key FILE      the device's private key (PKCS#8 or SEC1 PEM)
  --symmetric-key KEY     individual enrollment key (or env DEVICE_SYMMETRIC_KEY, kept out of shell history)
  --group-key KEY         enrollment group key; the device key is derived from it (or env DEVICE_GROUP_KEY)
  --host H[:PORT]         DPS endpoint (default ${DEFAULT_DPS_HOST})
  --transport T           ${TRANSPORTS.join(' or ')} (default http)
  --ca FILE               extra CA certificates (PEM) to trust, e.g. a local DPS's
  --lifetime SECONDS      token lifetime, 1..${MAX_LIFETIME_SECONDS} (default ${DEFAULT_LIFETIME_SECONDS})
  --kid=K                 key id for the token header (write --kid=K: a thumbprint may start with -)
  --timeout SECONDS       give up after this long (default ${DEFAULT_TIMEOUT_MS / 1000})
  --json                  print the result (or the error) as JSON on stdout
  -h, --help              show this help

Neither the keys, the SAS token nor the JWT are ever printed.

Exit codes:
    0  assigned
${Object.entries(EXIT_CODES)
  .map(([code, exit]) => `  ${String(exit).padStart(3)}  ${code.padEnd(22)} ${EXIT_CODE_SUMMARIES[code as SampleDeviceErrorCode]}`)
  .join('\n')}`,
  },
  connect: {
    summary: 'connect to the assigned hub: print the desired properties, report back, send telemetry',
    usage: `${PROGRAM} connect --hub HUB --device-id ID (--symmetric-key KEY | --group-key KEY) [--hub-host H:PORT] [--ca FILE] [--count N]`,
    options: { ...CONNECT_OPTIONS, hub: { type: 'string' }, 'device-id': { type: 'string' }, 'symmetric-key': { type: 'string' }, 'group-key': { type: 'string' }, ca: { type: 'string' }, json: { type: 'boolean' }, ...HELP_OPTION },
    help: `Connects to the IoT hub DPS assigned, with the official Azure IoT SDK over MQTT (TLS) and the device's key,
prints the twin's desired properties, reports a property back, and sends a telemetry message every desired
telemetryInterval seconds (default ${DEFAULT_TELEMETRY_INTERVAL_SECONDS}; updates are followed) for --count messages or until Ctrl-C.

Options:
  --hub HUB               the assigned hub's host name (register prints it)
  --device-id ID          the device id (register prints it; a group device's is its registration id)
  --symmetric-key KEY     the individual enrollment's key (or env DEVICE_SYMMETRIC_KEY)
  --group-key KEY         the enrollment group's key; the device key is derived (or env DEVICE_GROUP_KEY)
${CONNECT_HELP}
  --ca FILE               extra CA certificates (PEM) to trust, e.g. the local DPS's
  --json                  print the result (or the error) as JSON on stdout
  -h, --help              show this help

Nothing secret is printed. Exit codes: 0 done (also on Ctrl-C while sending telemetry), 11 hub_unreachable,
12 hub_unauthorized, 13 twin_timeout, 2 usage, 3 file, 130 Ctrl-C before the telemetry started.`,
  },
  run: {
    summary: 'register, then connect to the assigned hub (register + connect in one)',
    usage: `${PROGRAM} run --registration-id ID --id-scope S --private-key FILE (--symmetric-key KEY | --group-key KEY) [register options] [--hub-host H:PORT] [--count N]`,
    options: { ...REGISTER_OPTIONS, ...CONNECT_OPTIONS, ...HELP_OPTION },
    help: `Runs \`register\` (see its --help for the options and exit codes), then \`connect\` to the hub DPS assigned, with
the same key: prints the desired properties, reports a property back, sends telemetry.

Connect options:
${CONNECT_HELP}

Exit codes: those of register, then 11 hub_unreachable, 12 hub_unauthorized, 13 twin_timeout.`,
  },
} satisfies Record<string, CommandSpec>;

type CommandName = keyof typeof COMMANDS;

function toolHelp(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((name) => name.length));
  return `${PROGRAM}: a device that registers with Azure IoT Hub DPS presenting an ES256 JWT signed with its factory key

Usage: ${PROGRAM} <command> [options]

Commands:
${Object.entries(COMMANDS)
  .map(([name, spec]) => `  ${name.padEnd(width)}  ${spec.summary}`)
  .join('\n')}

Run \`${PROGRAM} <command> --help\` for a command's options and \`${PROGRAM} register --help\` for exit codes.`;
}

function commandHelp(name: CommandName): string {
  const spec = COMMANDS[name];
  return `Usage: ${spec.usage}\n\n${spec.help}`;
}

export interface CliIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly signal?: AbortSignal;
}

type Values = Record<string, string | boolean | undefined>;

/** Turns node:util parseArgs errors into usage errors that name the flag, without echoing stray values (they may be keys). */
function parseCommandArgs(name: CommandName, args: string[]): Values {
  try {
    const { values } = parseArgs({ args, options: COMMANDS[name].options, strict: true, allowPositionals: false });
    return values as Values;
  } catch (error) {
    const code = (error as { code?: string }).code;
    const message = (error as Error).message;
    const flag = /'(-{1,2}[A-Za-z0-9-]+)/.exec(message)?.[1];
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && flag !== undefined) {
      throw usageError(flag, `is not an option of \`${name}\` (see \`${PROGRAM} ${name} --help\`)`);
    }
    if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && flag !== undefined) {
      const boolean = (COMMANDS[name].options as Options)[flag.replace(/^-+/, '')]?.type === 'boolean';
      throw usageError(flag, boolean ? 'takes no value' : 'needs a value');
    }
    if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
      throw new SampleDeviceError('usage', `\`${name}\` takes only --options; found a stray argument (a value without its flag?)`);
    }
    throw new SampleDeviceError('usage', `cannot parse the arguments of \`${name}\``);
  }
}

function str(values: Values, flag: string): string | undefined {
  const value = values[flag];
  return typeof value === 'string' ? value : undefined;
}

function required(values: Values, flag: string): string {
  const value = str(values, flag);
  if (value === undefined || value.trim() === '') throw usageError(`--${flag}`, 'is required');
  return value;
}

function seconds(values: Values, flag: string): number | undefined {
  const value = str(values, flag);
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value.trim())) throw usageError(`--${flag}`, `must be a whole number of seconds, got "${value}"`);
  return Number(value.trim());
}

function optional<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}

function formatRegistration(result: RegisterResult): string {
  const lines = [
    `${result.registrationId} registered over ${result.transport} with ${result.host}`,
    `  status:        ${result.status}${result.substatus !== undefined ? ` (${result.substatus})` : ''}`,
    `  assigned hub:  ${result.assignedHub}`,
    `  device id:     ${result.deviceId}`,
    `  payload:       ${result.payload === undefined ? '(none)' : JSON.stringify(result.payload, null, 2).replace(/\n/g, '\n                 ')}`,
    `  attestation:   ${result.attestation}; token signed by key ${result.keyThumbprint}, expires ${result.tokenExpiresAt}`,
  ];
  return lines.join('\n');
}

function formatConnection(result: ConnectResult): string {
  return [
    `${result.deviceId} connected to ${result.hub}${result.via !== result.hub ? ` (via ${result.via})` : ''}`,
    `  desired:       ${JSON.stringify(result.desired)}`,
    `  reported:      ${JSON.stringify(result.reported)}`,
    `  telemetry:     ${result.telemetrySent} message(s), every ${result.telemetryIntervalSeconds} s; ${result.desiredUpdates} desired update(s) received`,
  ].join('\n');
}

/** The connect options common to `connect` and `run`. */
function connectFlags(values: Values, io: CliIo, json: boolean): Partial<ConnectOptions> {
  const count = str(values, 'count');
  if (count !== undefined && !/^\d+$/.test(count.trim())) throw usageError('--count', `must be a whole number, got "${count}"`);
  const twinTimeout = seconds(values, 'twin-timeout');
  const connectTimeout = seconds(values, 'connect-timeout');
  if (twinTimeout === 0) throw usageError('--twin-timeout', 'must be at least 1 second');
  if (connectTimeout === 0) throw usageError('--connect-timeout', 'must be at least 1 second');
  return {
    ...optional('hubHost', str(values, 'hub-host')),
    ...optional('count', count === undefined ? undefined : Number(count.trim())),
    ...optional('twinTimeoutMs', twinTimeout === undefined ? undefined : twinTimeout * 1000),
    ...optional('connectTimeoutMs', connectTimeout === undefined ? undefined : connectTimeout * 1000),
    ...optional('signal', io.signal),
    // Progress lines go to stderr under --json, so stdout stays one JSON document.
    print: (line: string) => (json ? io.stderr(line) : io.stdout(line)),
  };
}

/** Keys from flags, else from the environment (keeps them out of shell history and `ps`). */
function keyFlags(values: Values, io: CliIo): { symmetricKey?: string; groupKey?: string } {
  const symmetricFlag = str(values, 'symmetric-key');
  const groupFlag = str(values, 'group-key');
  const fromEnv = symmetricFlag === undefined && groupFlag === undefined;
  const envKey = (name: string): string | undefined => (fromEnv && io.env[name]?.trim() ? io.env[name] : undefined);
  return { ...optional('symmetricKey', symmetricFlag ?? envKey('DEVICE_SYMMETRIC_KEY')), ...optional('groupKey', groupFlag ?? envKey('DEVICE_GROUP_KEY')) };
}

async function runCommand(name: CommandName, values: Values, io: CliIo): Promise<void> {
  switch (name) {
    case 'keygen': {
      const result = await keygen({ outDir: required(values, 'out-dir'), ...optional('name', str(values, 'name')) });
      io.stdout(
        [
          'Wrote a P-256 key pair:',
          `  private key:  ${result.privateKeyFile}  (PKCS#8, mode 0600: keep it on the device)`,
          `  public key:   ${result.publicKeyFile}  (SPKI: give it to the webhook's key store)`,
          `  thumbprint:   ${result.thumbprint}  (JWK SHA-256 thumbprint, a good --kid=<thumbprint>)`,
        ].join('\n'),
      );
      return;
    }
    case 'token': {
      const result = await token({
        privateKeyFile: required(values, 'private-key'),
        registrationId: required(values, 'registration-id'),
        ...optional('idScope', str(values, 'id-scope')),
        ...optional('host', str(values, 'host')),
        ...optional('lifetimeSeconds', seconds(values, 'lifetime')),
        ...optional('kid', str(values, 'kid')),
        ...optional('jti', str(values, 'jti')),
        ...optional('now', seconds(values, 'iat')),
      });
      io.stdout(
        [
          result.token,
          '',
          `header: ${JSON.stringify(result.header, null, 2)}`,
          `claims: ${JSON.stringify(result.claims, null, 2)}`,
          `signed by key thumbprint ${result.thumbprint}; expires ${new Date(Number(result.claims.exp) * 1000).toISOString()}`,
        ].join('\n'),
      );
      return;
    }
    case 'connect': {
      const json = values.json === true;
      const result = await connect({
        hub: required(values, 'hub'),
        deviceId: required(values, 'device-id'),
        ...keyFlags(values, io),
        ...optional('caFile', str(values, 'ca')),
        ...connectFlags(values, io, json),
      });
      io.stdout(json ? JSON.stringify({ ok: true, ...result }, null, 2) : formatConnection(result));
      return;
    }
    case 'run': {
      const json = values.json === true;
      const registration = await registerFrom(values, io);
      if (!json) io.stdout(formatRegistration(registration));
      const result = await connect({
        hub: registration.assignedHub,
        deviceId: registration.deviceId,
        ...keyFlags(values, io),
        ...optional('caFile', str(values, 'ca')),
        ...connectFlags(values, io, json),
      });
      io.stdout(json ? JSON.stringify({ ok: true, registration, connection: result }, null, 2) : formatConnection(result));
      return;
    }
    case 'register': {
      const result = await registerFrom(values, io);
      io.stdout(values.json === true ? JSON.stringify({ ok: true, ...result }, null, 2) : formatRegistration(result));
      return;
    }
  }
}

async function registerFrom(values: Values, io: CliIo): Promise<RegisterResult> {
  const transport = str(values, 'transport') ?? 'http';
  if (!(TRANSPORTS as readonly string[]).includes(transport)) throw usageError('--transport', `must be one of ${TRANSPORTS.join(', ')}, got "${transport}"`);
  const timeoutSeconds = seconds(values, 'timeout');
  if (timeoutSeconds === 0) throw usageError('--timeout', 'must be at least 1 second');
  return register({
    registrationId: required(values, 'registration-id'),
    idScope: required(values, 'id-scope'),
    privateKeyFile: required(values, 'private-key'),
    ...keyFlags(values, io),
    ...optional('host', str(values, 'host')),
    transport: transport as TransportKind,
    ...optional('caFile', str(values, 'ca')),
    ...optional('lifetimeSeconds', seconds(values, 'lifetime')),
    ...optional('kid', str(values, 'kid')),
    ...optional('timeoutMs', timeoutSeconds === undefined ? undefined : timeoutSeconds * 1000),
    ...optional('signal', io.signal),
  });
}

/** Runs the CLI; returns the exit code. Exported for tests, which pass their own io. */
export async function main(argv: readonly string[], io: CliIo): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined || first === '--help' || first === '-h' || first === 'help') {
    io.stdout(toolHelp());
    return first === undefined ? EXIT_CODES.usage : 0;
  }
  if (!Object.hasOwn(COMMANDS, first)) {
    io.stderr(`${PROGRAM}: error: unknown command "${first.startsWith('-') ? first : first.slice(0, 40)}"\n\n${toolHelp()}`);
    return EXIT_CODES.usage;
  }
  const name = first as CommandName;
  let json = false;
  try {
    if (rest.includes('--help') || rest.includes('-h')) {
      io.stdout(commandHelp(name));
      return 0;
    }
    const values = parseCommandArgs(name, rest);
    json = values.json === true;
    await runCommand(name, values, io);
    return 0;
  } catch (error) {
    const failure =
      error instanceof SampleDeviceError
        ? error
        : new SampleDeviceError('internal', `unexpected ${(error as Error)?.name ?? 'error'}: ${(error as Error)?.message ?? String(error)}`);
    const lines = [`${PROGRAM} ${name}: error: ${failure.message}`];
    if (failure.hint !== undefined) lines.push(`  hint: ${failure.hint}`);
    if (failure.code === 'usage') lines.push(`  usage: ${COMMANDS[name].usage}`);
    io.stderr(lines.join('\n'));
    if (json) {
      io.stdout(
        JSON.stringify(
          {
            ok: false,
            code: failure.code,
            exitCode: failure.exitCode,
            message: failure.message,
            ...optional('dpsErrorCode', failure.dpsErrorCode),
            ...optional('dpsStatus', failure.dpsStatus),
            ...optional('hint', failure.hint),
          },
          null,
          2,
        ),
      );
    }
    return failure.exitCode;
  }
}

if (isEntryPoint(import.meta.url)) {
  const controller = new AbortController();
  // First Ctrl-C cancels the registration cleanly (exit 130); a second one kills at once.
  process.once('SIGINT', () => {
    controller.abort();
    process.once('SIGINT', () => process.exit(EXIT_CODES.interrupted));
  });
  const code = await main(process.argv.slice(2), {
    stdout: (text) => process.stdout.write(`${text}\n`),
    stderr: (text) => process.stderr.write(`${text}\n`),
    env: process.env,
    signal: controller.signal,
  });
  process.exitCode = code;
  // The SDK can leave a timer or socket behind after a failure; do not let it hold the exit.
  setTimeout(() => process.exit(code), 2000).unref();
}
