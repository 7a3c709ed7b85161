/**
 * The built sample-device CLI as a user runs it (a child process), against the real local DPS and webhook: exit codes,
 * what it prints, that keys given through the environment work, and that no secret is printed.
 */
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { deriveDeviceKey } from '../../sample-device/jwt.js';
import { ensureBuilt, group, HUBS, ID_SCOPE, individual, makeDevices, randomKey, REPO, startFlow, type Device, type Flow } from './fixture.js';

const CLI = join(REPO, 'dist/sample-device/cli.js');
const individualKey = randomKey();
const groupKey = randomKey(64);

let flow: Flow;
let devices: Map<string, Device>;
let hanging: Server;

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

function cli(args: string[], env: Record<string, string> = {}, interruptWhen?: () => Promise<void>): Promise<Run> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    if (interruptWhen !== undefined) void interruptWhen().then(() => child.kill('SIGINT'));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr, ms: Date.now() - started }));
  });
}

function registerArgs(id: string, transport: 'http' | 'mqtt', extra: string[] = []): string[] {
  const dps = flow.dps!;
  return [
    'register',
    '--registration-id', id,
    '--id-scope', ID_SCOPE,
    '--private-key', devices.get(id)!.privateKeyFile,
    '--host', transport === 'http' ? dps.httpsHost : dps.mqttHost,
    '--transport', transport,
    '--ca', dps.caFile,
    ...extra,
  ];
}

function expectNoSecrets(run: Run): void {
  const out = run.stdout + run.stderr;
  for (const secret of [individualKey, groupKey, deriveDeviceKey(groupKey, 'line7-0001'), deriveDeviceKey(groupKey, 'line7-0099'), flow.functionKey]) {
    expect(out).not.toContain(secret);
  }
  expect(out).not.toMatch(/eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+/);
  expect(out).not.toMatch(/SharedAccessSignature sr=|[?&]sig=/);
}

beforeAll(async () => {
  await ensureBuilt();
  flow = await startFlow();
  devices = await makeDevices(flow.work, flow.keysDir, ['sensor-0042', 'sensor-slow', 'sensor-slow-2', 'line7-0001', 'line7-0099'], ['line7-0099']);
  // A webhook that accepts the connection and never answers: DPS keeps the device waiting.
  hanging = createServer(() => undefined);
  await new Promise<void>((r) => hanging.listen(0, '127.0.0.1', r));
  const slowUrl = `http://127.0.0.1:${(hanging.address() as AddressInfo).port}/api/validatejwt`;
  await flow.startDps(
    {
      individualEnrollments: [individual('sensor-0042', individualKey, flow.webhookUrl()), individual('sensor-slow', individualKey, flow.webhookUrl(slowUrl)),
        // Its own id: DPS would hand a second registration of sensor-slow the first one's pending operation.
        individual('sensor-slow-2', individualKey, flow.webhookUrl(slowUrl)),
      ],
      enrollmentGroups: [group('factory-line-7', groupKey, flow.webhookUrl())],
    },
    { webhookTimeoutMs: 30_000 },
  );
});

afterAll(async () => {
  hanging?.closeAllConnections();
  await new Promise<void>((r) => (hanging ? hanging.close(() => r()) : r()));
  await flow?.close();
});

describe('sample-device register (child process)', () => {
  test('assigned over HTTPS with the key from DEVICE_SYMMETRIC_KEY: exit 0, hub and device id printed', async () => {
    const run = await cli(registerArgs('sensor-0042', 'http'), { DEVICE_SYMMETRIC_KEY: individualKey });
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^sensor-0042 registered over http with localhost:\d+$/m);
    expect(run.stdout).toMatch(new RegExp(`assigned hub:\\s+(${HUBS.join('|').replace(/\./g, '\\.')})`));
    expect(run.stdout).toMatch(/device id:\s+sensor-0042/);
    expectNoSecrets(run);
  });

  test('assigned over MQTT with the group key from DEVICE_GROUP_KEY, --json', async () => {
    const run = await cli(registerArgs('line7-0001', 'mqtt', ['--json']), { DEVICE_GROUP_KEY: groupKey });
    expect(run.code).toBe(0);
    const result = JSON.parse(run.stdout) as Record<string, unknown>;
    expect(result).toMatchObject({ ok: true, registrationId: 'line7-0001', deviceId: 'line7-0001', status: 'assigned', transport: 'mqtt', attestation: 'group-key' });
    expect(HUBS).toContain(result.assignedHub);
    expectNoSecrets(run);
  });

  test('a device the webhook refuses: exit 6 and the DPS error explained', async () => {
    const run = await cli(registerArgs('line7-0099', 'mqtt', ['--group-key', groupKey]));
    expect(run.code).toBe(6);
    expect(run.stderr).toContain('DPS error 400207 CustomAllocationFailed: the webhook refused this device (bad/expired token, unknown key, disabled key...)');
    expectNoSecrets(run);
  });

  test('a wrong symmetric key: exit 5', async () => {
    const wrong = randomKey();
    const run = await cli(registerArgs('sensor-0042', 'http', ['--json']), { DEVICE_SYMMETRIC_KEY: wrong });
    expect(run.code).toBe(5);
    expect(JSON.parse(run.stdout)).toMatchObject({ ok: false, code: 'unauthorized', exitCode: 5, dpsErrorCode: 401002 });
    expect(run.stdout + run.stderr).not.toContain(wrong);
  });

  test('--timeout gives up on a registration DPS keeps waiting on: exit 10, promptly', async () => {
    const run = await cli(registerArgs('sensor-slow', 'http', ['--timeout', '1']), { DEVICE_SYMMETRIC_KEY: individualKey });
    expect(run.code).toBe(10);
    expect(run.stderr).toContain('did not finish within 1 s');
    // The SDK's poller must not keep the process alive after we gave up.
    expect(run.ms).toBeLessThan(6_000);
  });

  test('Ctrl-C during a registration exits 130', async () => {
    const before = flow.dps!.registrations().length;
    // Interrupt once DPS holds the registration (waiting on the silent webhook), not before the CLI is even up.
    const registering = async (): Promise<void> => {
      while (!flow.dps!.registrations().slice(before).some((r) => r.registrationId === 'sensor-slow-2' && r.status === 'assigning')) {
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    const run = await cli(registerArgs('sensor-slow-2', 'mqtt'), { DEVICE_SYMMETRIC_KEY: individualKey }, registering);
    expect(run.signal).toBeNull();
    expect(run.code).toBe(130);
    expect(run.stderr).toContain('interrupted');
    expect(run.ms).toBeLessThan(6_000);
  });
});

describe('sample-device run / connect (child process): after assignment, the local IoT Hub', () => {
  const runArgs = (id: string, extra: string[] = []): string[] => {
    const args = registerArgs(id, 'mqtt', extra);
    args[0] = 'run';
    return [...args, '--hub-host', flow.dps!.hub.host];
  };

  test('run: registers, connects through --hub-host, prints the desired properties, reports, sends --count telemetry; exit 0', async () => {
    const run = await cli(runArgs('line7-0001', ['--count', '1']), { DEVICE_GROUP_KEY: groupKey });
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^line7-0001 registered over mqtt/m);
    expect(run.stdout).toMatch(/^connected: line7-0001 on hub-(eu|us)\.azure-devices\.net via localhost:\d+ \(MQTT over TLS\)$/m);
    expect(run.stdout).toContain('desired properties: {"telemetryInterval":30,"$version":1}');
    expect(run.stdout).toMatch(/^reported: \{"telemetryInterval":30,/m);
    expect(run.stdout).toMatch(/^telemetry 1\/1 sent: \{"deviceId":"line7-0001","seq":1,/m);
    const seen = flow.dps!.hub.devices().find((d) => d.deviceId === 'line7-0001')!;
    expect(seen.telemetryCount).toBeGreaterThanOrEqual(1);
    expectNoSecrets(run);
  });

  test('connect with a wrong key: exit 12 (hub_unauthorized); to a port nobody serves: exit 11 (hub_unreachable)', async () => {
    await cli(registerArgs('sensor-0042', 'http'), { DEVICE_SYMMETRIC_KEY: individualKey });
    const hub = flow.dps!.hub.devices().find((d) => d.deviceId === 'sensor-0042')!.hub;
    const base = ['connect', '--hub', hub, '--device-id', 'sensor-0042', '--ca', flow.dps!.caFile, '--count', '1'];
    const wrong = randomKey();
    const refused = await cli([...base, '--hub-host', flow.dps!.hub.host], { DEVICE_SYMMETRIC_KEY: wrong });
    expect(refused.code).toBe(12);
    expect(refused.stderr).toContain('not authorized (CONNACK 5)');
    expect(refused.stdout + refused.stderr).not.toContain(wrong);
    const down = await cli([...base, '--hub-host', 'localhost:1', '--json'], { DEVICE_SYMMETRIC_KEY: individualKey });
    expect(down.code).toBe(11);
    expect(JSON.parse(down.stdout)).toMatchObject({ ok: false, code: 'hub_unreachable', exitCode: 11 });
    expectNoSecrets(down);
  });

  test('connect without --count sends until Ctrl-C, then prints its summary and exits 0', async () => {
    const hub = flow.dps!.hub.devices().find((d) => d.deviceId === 'line7-0001')!.hub;
    const before = flow.dps!.hub.device(hub, 'line7-0001')!.telemetryCount;
    const sent = async (): Promise<void> => {
      while (flow.dps!.hub.device(hub, 'line7-0001')!.telemetryCount === before) await new Promise((r) => setTimeout(r, 20));
    };
    const run = await cli(['connect', '--hub', hub, '--device-id', 'line7-0001', '--hub-host', flow.dps!.hub.host, '--ca', flow.dps!.caFile], { DEVICE_GROUP_KEY: groupKey }, sent);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/telemetry:\s+1 message\(s\), every 30 s/);
    expectNoSecrets(run);
  });
});
