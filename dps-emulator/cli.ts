#!/usr/bin/env node
/**
 * `node dist/dps-emulator/cli.js --enrollments enrollments.json [...]`: runs the local DPS until Ctrl-C.
 * Thin on purpose: parse flags, call startLocalDps, map errors to exit codes (2 usage, 1 failure).
 */
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { EnrollmentsError } from './protocol/enrollments.js';
import { DEFAULT_ID_SCOPE, loadEnrollments, startLocalDps, type LocalDps, type LocalDpsOptions } from './index.js';
import { readTlsFiles } from './tls.js';

const HELP = `Local Azure IoT Hub Device Provisioning Service and IoT Hub (for development; loopback only)

Usage: node dist/dps-emulator/cli.js --enrollments <file> [options]

  --enrollments <file>            enrollments JSON (DPS enrollment shape; see docs/local-dps.md)   required
  --port <n>                      HTTPS device API port                          default 8443
  --mqtt-port <n>                 MQTT-over-TLS device API port                  default 8883
  --hub-port <n>                  local IoT Hub (MQTT/TLS) for all linked hubs   default 8884
  --hub-listen <addr>             interface of the local IoT Hub alone           default --host
                                  (e.g. ::1 with --hub-port 8883 for Python devices)
  --ws-port <n>                   DPS MQTT over WebSockets (wss, /$iothub/websocket) on --host   default off
  --hub-ws-port <n>               hub MQTT over WebSockets on --hub-listen       default off
                                  (SDK WebSocket transports always use 443: e.g. --ws-port 443 and
                                  --hub-listen 127.0.0.2 --hub-ws-port 443, as root; 0 = a free port)
  --host <addr>                   interface to listen on                         default 127.0.0.1
  --id-scope <scope>              id scope devices must use                      default ${DEFAULT_ID_SCOPE}
  --cert <file> --key <file> --ca <file>
                                  server certificate, its key and the CA that signed it (PEM, all three);
                                  default: a throwaway CA and localhost certificate made at start
  --webhook-attempts <n>          webhook tries on 429/5xx/no answer             default 10
  --webhook-first-delay-ms <n>    wait before the 2nd try                        default 1000
  --webhook-increment-ms <n>      added to the wait for each further try         default 9000
  --webhook-timeout-ms <n>        per webhook call                               default 30000
  --retry-after <seconds>         Retry-After told to polling devices (whole)    default 3
  --max-registrations <n>         distinct registration ids kept (new: 429)      default 10000
  -h, --help                      this text

Devices: provisioning host localhost:<port> (HTTPS) or localhost:<mqtt-port> (MQTT); trust the CA file printed
at start (e.g. NODE_EXTRA_CA_CERTS=<file>). After assignment, a device connects to its hub through
GatewayHostName=localhost:<hub-port> in its connection string (HostName stays the assigned hub's name), or the
sample device's --hub-host localhost:<hub-port>. No *.azure-devices.net name is ever resolved.`;

export class UsageError extends Error {
  override name = 'UsageError';
}

export interface CliIo {
  out: (line: string) => void;
  err: (line: string) => void;
}

/** Parses argv into options. Throws UsageError on a bad flag. */
export async function parseCli(argv: string[]): Promise<{ help: true } | { help: false; options: LocalDpsOptions }> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        enrollments: { type: 'string' },
        port: { type: 'string' },
        'mqtt-port': { type: 'string' },
        'hub-port': { type: 'string' },
        'hub-listen': { type: 'string' },
        'ws-port': { type: 'string' },
        'hub-ws-port': { type: 'string' },
        'max-registrations': { type: 'string' },
        host: { type: 'string' },
        'id-scope': { type: 'string' },
        cert: { type: 'string' },
        key: { type: 'string' },
        ca: { type: 'string' },
        'webhook-attempts': { type: 'string' },
        'webhook-first-delay-ms': { type: 'string' },
        'webhook-increment-ms': { type: 'string' },
        'webhook-timeout-ms': { type: 'string' },
        'retry-after': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (values.help) return { help: true };
  if (!values.enrollments) throw new UsageError('--enrollments <file> is required');

  const int = (flag: string, v: string | undefined, dflt: number, min: number, max: number): number => {
    if (v === undefined) return dflt;
    if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) throw new UsageError(`--${flag} must be an integer from ${min} to ${max}, got "${v}"`);
    return Number(v);
  };
  const tlsFlags = [values.cert, values.key, values.ca].filter((v) => v !== undefined).length;
  if (tlsFlags !== 0 && tlsFlags !== 3) throw new UsageError('--cert, --key and --ca go together: give all three or none');
  // Whole seconds: the Python SDK parses retry-after with int() and hangs on a fraction (docs/local-dps.md).
  const retryAfterSeconds = values['retry-after'] === undefined ? undefined : int('retry-after', values['retry-after'], 3, 1, 3600);

  // Every flag is checked before any file is read, so a usage mistake is reported as one (exit code 2).
  const flags: Omit<LocalDpsOptions, 'enrollments'> = {
    httpsPort: int('port', values.port, 8443, 0, 65535),
    mqttPort: int('mqtt-port', values['mqtt-port'], 8883, 0, 65535),
    hubPort: int('hub-port', values['hub-port'], 8884, 0, 65535),
    maxRegistrations: int('max-registrations', values['max-registrations'], 10_000, 1, 1_000_000),
    host: values.host ?? '127.0.0.1',
    ...(values['hub-listen'] !== undefined && { hubListenHost: values['hub-listen'] }),
    // Off unless asked: the SDKs want 443, a privileged port, and DPS and hub each need an address for it.
    ...(values['ws-port'] !== undefined && { wsPort: int('ws-port', values['ws-port'], 0, 0, 65535) }),
    ...(values['hub-ws-port'] !== undefined && { hubWsPort: int('hub-ws-port', values['hub-ws-port'], 0, 0, 65535) }),
    idScope: values['id-scope'] ?? DEFAULT_ID_SCOPE,
    webhookRetry: {
      attempts: int('webhook-attempts', values['webhook-attempts'], 10, 1, 100),
      firstDelayMs: int('webhook-first-delay-ms', values['webhook-first-delay-ms'], 1000, 0, 3_600_000),
      incrementMs: int('webhook-increment-ms', values['webhook-increment-ms'], 9000, 0, 3_600_000),
    },
    webhookTimeoutMs: int('webhook-timeout-ms', values['webhook-timeout-ms'], 30_000, 1, 600_000),
  };
  const options: LocalDpsOptions = { ...flags, enrollments: await loadEnrollments(values.enrollments) };
  if (retryAfterSeconds !== undefined) options.retryAfterSeconds = retryAfterSeconds;
  if (values.cert && values.key && values.ca) {
    options.tls = { ...(await readTlsFiles({ cert: values.cert, key: values.key, ca: values.ca })), caFile: values.ca };
  }
  return { help: false, options };
}

/** Starts the emulator and prints where it listens. The caller decides when to close it. */
export async function runCli(argv: string[], io: CliIo): Promise<LocalDps | undefined> {
  const parsed = await parseCli(argv);
  if (parsed.help) {
    io.out(HELP);
    return undefined;
  }
  const dps = await startLocalDps({ ...parsed.options, log: (line) => io.out(`${new Date().toISOString()} ${line}`) });
  io.out(`local DPS id scope ${dps.idScope}`);
  io.out(`  HTTPS device API  https://${dps.httpsHost}  (SDK: host "localhost", https.Agent defaultPort ${dps.httpsPort})`);
  io.out(`  MQTT device API   mqtts://${dps.mqttHost}  (SDK: host "${dps.mqttHost}")`);
  if (dps.websocket) io.out(`  MQTT/WebSockets   ${dps.websocket.url}  (SDK websocket transport: host "${dps.websocket.address}", port 443 only)`);
  io.out(`  local IoT Hub     mqtts://${dps.hub.host}  for ${dps.hub.hubNames.join(', ')}  (connection string: ...;GatewayHostName=${dps.hub.host})`);
  if (dps.hub.websocket) io.out(`  hub WebSockets    ${dps.hub.websocket.url}  (SDK websocket transport: GatewayHostName=${dps.hub.websocket.address}, port 443 only)`);
  io.out(`  CA certificate    ${dps.caFile}  (trust it: NODE_EXTRA_CA_CERTS=${dps.caFile})`);
  return dps;
}

/** Exit codes: 0 ok, 1 could not start (bad enrollments, port in use, unreadable TLS files), 2 usage. */
export function exitCodeFor(err: unknown): number {
  return err instanceof UsageError ? 2 : 1;
}

async function main(): Promise<void> {
  const io: CliIo = { out: (l) => console.log(l), err: (l) => console.error(l) };
  let dps: LocalDps | undefined;
  try {
    dps = await runCli(process.argv.slice(2), io);
  } catch (err) {
    const msg = err instanceof EnrollmentsError || err instanceof UsageError || err instanceof TypeError
      ? err.message
      : `${(err as NodeJS.ErrnoException).code ?? (err as Error).name}: ${(err as Error).message}`;
    io.err(`local-dps: ${msg}`);
    if (err instanceof UsageError) io.err('try --help');
    process.exitCode = exitCodeFor(err);
    return;
  }
  if (!dps) return;
  const running = dps;
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    io.out('local DPS stopping');
    void running.close().then(() => (process.exitCode = 0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) void main();
