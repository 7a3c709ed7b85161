/**
 * The Python sample device (sample-device-py/, the official azure-iot-device 2.14.0 SDK) through the local DPS, the
 * real webhook (the shipped bundle) and the local IoT Hub, as a user runs it: the CLI as a child process, keys in
 * DEVICE_SYMMETRIC_KEY / DEVICE_GROUP_KEY. An individual device (its key pair made by the Python sample's keygen)
 * and a group member (made by the Node sample's keygen): each gets `assigned`, connects to its hub, reads the
 * desired properties the webhook set, reports back and sends telemetry the hub records. Refusals: a tampered token
 * and another device's token (exit 6, the webhook's reasons in its log), a wrong symmetric key (exit 5, the webhook
 * never called). Also the time from start to `assigned`, Python and Node sample side by side (printed, not asserted).
 *
 * Port: the Python SDK always connects to 8883 and takes no port, so the DPS and the hub each listen on 8883 at a
 * loopback address of their own (as test/python-sdk/python-sdk.test.ts does, which explains it).
 */
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createInterface } from 'node:readline';
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { generateLocalTls } from '../../dps-emulator/tls.js';
import { ensureBuilt, group, HUBS, ID_SCOPE, individual, makeDevices, randomKey, startFlow, type Device, type Flow } from '../e2e/fixture.js';
import { onOwnLoopbackAddresses } from '../support/ports.js';
import { CLI, NODE_CLI, outputs, python, runProcess, runPy, runPyReplacingToken } from './run.js';

const individualKey = randomKey();
const groupKey = randomKey(64);
const strangerKey = randomKey();
const INDIVIDUAL = 'pysample-0001';
const MEMBER = 'pyline8-0002';
const STRANGER = 'pysample-stranger-0003';
const OTHER = 'pysample-other-0004';
const DISABLED = 'pysample-disabled-0005';
const SLOW = 'pysample-slow-0006';
const disabledKey = randomKey();

let flow: Flow;
let devices: Map<string, Device>;
let dpsAddress: string;
let hubAddress: string;
let hanging: Server;
/** Start to `assigned`, per sample, measured from spawn to the exit of `register`. */
const times: { sample: string; ms: number }[] = [];


beforeAll(async () => {
  await ensureBuilt(); // the Node sample's CLI, for the time comparison
  flow = await startFlow();
  devices = await makeDevices(flow.work, flow.keysDir, [MEMBER, STRANGER, OTHER, DISABLED, SLOW]);
  // A webhook that accepts the connection and never answers: DPS keeps the device waiting (its 5 s per attempt).
  hanging = createServer(() => undefined);
  await new Promise<void>((r) => hanging.listen(0, '127.0.0.1', r));
  const slowUrl = `http://127.0.0.1:${(hanging.address() as AddressInfo).port}/api/validatejwt`;
  // The individual device's key pair from the Python sample's own keygen: the webhook takes its .pub.pem as is.
  const made = await runPy(['keygen', '--out-dir', join(flow.work, 'devices', INDIVIDUAL), '--name', INDIVIDUAL]);
  expect(made.code, made.stderr).toBe(0);
  const pair = { id: INDIVIDUAL, privateKeyFile: join(flow.work, 'devices', INDIVIDUAL, `${INDIVIDUAL}.key.pem`), publicKeyFile: join(flow.work, 'devices', INDIVIDUAL, `${INDIVIDUAL}.pub.pem`) };
  await copyFile(pair.publicKeyFile, join(flow.keysDir, `${INDIVIDUAL}.pem`));
  devices.set(INDIVIDUAL, pair);
  const enrollments = {
    individualEnrollments: [
      individual(INDIVIDUAL, individualKey, flow.webhookUrl()),
      individual(STRANGER, strangerKey, flow.webhookUrl()),
      individual(OTHER, randomKey(), flow.webhookUrl()),
      individual(DISABLED, disabledKey, flow.webhookUrl(), { provisioningStatus: 'disabled' }),
      individual(SLOW, individualKey, flow.webhookUrl(slowUrl)),
    ],
    enrollmentGroups: [group('factory-line-8', groupKey, flow.webhookUrl())],
  };
  // 8883 on two loopback addresses of their own: the SDK cannot be given a port.
  ({ dpsAddress, hubAddress } = await onOwnLoopbackAddresses(async (dps, hub) => {
    const tls = await generateLocalTls(new Date(), [dps, hub]);
    return flow.startDps(enrollments, { host: dps, mqttPort: 8883, hubListenHost: hub, hubPort: 8883, tls });
  }));
}, 15 * 60_000);

afterAll(async () => {
  hanging?.closeAllConnections();
  hanging?.close();
  await flow?.close();
  if (times.length > 0) console.info(`sample start to assigned (local DPS, MQTT): ${times.map((t) => `${t.sample} ${t.ms} ms`).join(', ')}`);
});

const registerArgs = (id: string, timeoutSeconds = 60): string[] => ['--registration-id', id, '--id-scope', ID_SCOPE, '--private-key', devices.get(id)!.privateKeyFile, '--host', dpsAddress, '--ca', flow.dps!.caFile, '--timeout', String(timeoutSeconds)];

const CASES = [
  { title: 'an individual enrollment (key pair from the Python keygen)', id: INDIVIDUAL, env: (): Record<string, string> => ({ DEVICE_SYMMETRIC_KEY: individualKey }), attestation: 'symmetric-key' },
  { title: 'an enrollment group member (key pair from the Node keygen)', id: MEMBER, env: (): Record<string, string> => ({ DEVICE_GROUP_KEY: groupKey }), attestation: 'group-key' },
];

describe.each(CASES)('the Python sample, $title', ({ id, env, attestation }) => {
  test('`run`: assigned by the webhook, then on its hub reads the desired properties the webhook set, reports, and sends telemetry the hub records', async () => {
    const seen = (await flow.webhookLog()).length;
    const run = await runPy(['run', ...registerArgs(id), '--hub-host', hubAddress, '--count', '1', '--json'], env());
    expect(run.code, run.stderr).toBe(0);
    const out = JSON.parse(run.stdout) as { ok: boolean; registration: Record<string, any>; connection: Record<string, any> };
    expect(out.ok).toBe(true);

    // DPS: assigned by the real webhook to a linked hub, with the webhook's payload handed back.
    expect(out.registration).toMatchObject({ registrationId: id, deviceId: id, status: 'assigned', substatus: 'initialAssignment', attestation, transport: 'mqtt', host: dpsAddress });
    expect(HUBS).toContain(out.registration.assignedHub);
    expect(out.registration.payload).toMatchObject({ algorithm: 'ES256' });
    expect((await flow.webhookLog()).slice(seen).map((l) => l.code)).toEqual(['assigned']);

    // The hub: the desired properties the webhook set, the reported ones, one telemetry message recorded.
    const dps = flow.dps!;
    const record = dps.registrations().filter((r) => r.registrationId === id).at(-1)!;
    expect((record.initialTwin as { properties: { desired: unknown } }).properties.desired).toEqual({ telemetryInterval: 30 });
    expect(out.connection).toMatchObject({ hub: out.registration.assignedHub, deviceId: id, via: hubAddress, telemetrySent: 1, telemetryIntervalSeconds: 30 });
    expect(out.connection.desired).toEqual({ telemetryInterval: 30, $version: 1 });
    const onHub = dps.hub.device(out.registration.assignedHub as string, id)!;
    expect(onHub.twin.properties.reported).toMatchObject({ telemetryInterval: 30, agent: 'dps-jwt-webhook sample-device-py' });
    expect(onHub.telemetryCount).toBe(1);
    expect(JSON.parse(onHub.lastTelemetry!.body)).toMatchObject({ deviceId: id, seq: 1 });
    expect(onHub.lastTelemetry!.properties).toMatchObject({ source: 'sample-device-py', '$.ct': 'application/json', '$.ce': 'utf-8' });
    // Progress lines went to stderr under --json, and name what happened.
    expect(run.stderr).toContain(`desired properties: {"telemetryInterval":30,"$version":1}`);
    expect(run.stderr).toMatch(/telemetry 1\/1 sent/);
  }, 180_000);
});

describe('Ctrl-C', () => {
  test('while sending telemetry, `run` ends normally: the summary printed, exit 0', async () => {
    const child = spawn(python(), [CLI, 'run', ...registerArgs(INDIVIDUAL), '--hub-host', hubAddress], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C.UTF-8', DEVICE_SYMMETRIC_KEY: individualKey },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    // The first message is sent at once; the next waits the twin's 30 s, so Ctrl-C lands in that wait.
    createInterface({ input: child.stdout }).on('line', (line) => {
      stdout += `${line}\n`;
      if (line.startsWith('telemetry 1 sent')) child.kill('SIGINT');
    });
    const killer = setTimeout(() => child.kill('SIGKILL'), 150_000);
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    clearTimeout(killer);
    outputs.push(stdout, stderr);
    expect(code, stderr).toBe(0);
    expect(stdout).toMatch(/telemetry: {5}1 message\(s\), every 30 s; 0 desired update\(s\) received/);
  }, 180_000);
});

describe('start to assigned, the Python and the Node sample against the same local DPS', () => {
  test('each `register` exits 0 with the device assigned (the times are printed after the run)', async () => {
    const py = await runPy(['register', ...registerArgs(INDIVIDUAL), '--json'], { DEVICE_SYMMETRIC_KEY: individualKey });
    expect(py.code, py.stderr).toBe(0);
    expect(JSON.parse(py.stdout)).toMatchObject({ ok: true, status: 'assigned' });
    const args = registerArgs(INDIVIDUAL).map((a) => (a === dpsAddress ? `${dpsAddress}:8883` : a));
    const node = await runProcess(process.execPath, [NODE_CLI, 'register', ...args, '--transport', 'mqtt', '--json'], { DEVICE_SYMMETRIC_KEY: individualKey });
    expect(node.code, node.stderr).toBe(0);
    expect(JSON.parse(node.stdout)).toMatchObject({ ok: true, status: 'assigned' });
    // The same programs' start-up alone (`register --help`: no SDK call), to tell start-up from registration.
    const pyHelp = await runPy(['register', '--help']);
    const nodeHelp = await runProcess(process.execPath, [NODE_CLI, 'register', '--help']);
    expect([pyHelp.code, nodeHelp.code]).toEqual([0, 0]);
    times.push({ sample: 'python', ms: py.ms }, { sample: 'node', ms: node.ms }, { sample: 'python --help', ms: pyHelp.ms }, { sample: 'node --help', ms: nodeHelp.ms });
  }, 180_000);
});

describe('refusals, with the documented exit codes', () => {
  test('a tampered token: DPS reports failed (exit 6, refused); the webhook refused it for its signature', async () => {
    const seen = (await flow.webhookLog()).length;
    const run = await runPyReplacingToken('tamper', { keyFile: devices.get(OTHER)!.privateKeyFile, id: OTHER }, ['register', ...registerArgs(INDIVIDUAL), '--json'], { DEVICE_SYMMETRIC_KEY: individualKey });
    expect(run.code, run.stderr).toBe(6);
    expect(JSON.parse(run.stdout)).toMatchObject({ ok: false, code: 'refused', exitCode: 6, dpsStatus: 'failed' });
    expect(run.stderr).toMatch(/DPS reported status failed: the webhook refused this device/);
    expect((await flow.webhookLog()).slice(seen).map((l) => l.code)).toEqual(['token_signature_invalid']);
  }, 180_000);

  test('another device\'s valid token (signed with its own key, for its own id): exit 6, refused', async () => {
    const seen = (await flow.webhookLog()).length;
    const run = await runPyReplacingToken('other', { keyFile: devices.get(OTHER)!.privateKeyFile, id: OTHER }, ['register', ...registerArgs(INDIVIDUAL)], { DEVICE_SYMMETRIC_KEY: individualKey });
    expect(run.code, run.stderr).toBe(6);
    // Checked against the registering device's own key, the other device's signature cannot verify (as in test/e2e/flow).
    expect((await flow.webhookLog()).slice(seen).map((l) => l.code)).toEqual(['token_signature_invalid']);
  }, 180_000);

  test('a wrong symmetric key: DPS refuses the SAS (exit 5, unauthorized) and never calls the webhook', async () => {
    const seen = (await flow.webhookLog()).length;
    const run = await runPy(['register', ...registerArgs(STRANGER), '--json'], { DEVICE_SYMMETRIC_KEY: randomKey() });
    expect(run.code, run.stderr).toBe(5);
    expect(JSON.parse(run.stdout)).toMatchObject({ ok: false, code: 'unauthorized', exitCode: 5, httpStatus: 401 });
    expect(flow.dpsLog.filter((l) => l.includes(STRANGER))).toEqual([expect.stringMatching(/rejected errorCode=401002 \(SharedAccessSignature signature does not match\)/)]);
    expect((await flow.webhookLog()).length).toBe(seen);
  }, 180_000);

  test('--timeout gives up on a registration DPS keeps waiting on: exit 10', async () => {
    const run = await runPy(['register', ...registerArgs(SLOW, 2), '--json'], { DEVICE_SYMMETRIC_KEY: individualKey });
    expect(run.code, run.stderr).toBe(10);
    expect(run.stderr).toContain(`registration of ${SLOW} did not finish within 2 s`);
    expect(JSON.parse(run.stdout)).toMatchObject({ ok: false, code: 'timeout', exitCode: 10 });
  }, 180_000);

  test('a disabled enrollment: exit 8 (disabled), the webhook never called', async () => {
    const seen = (await flow.webhookLog()).length;
    const run = await runPy(['register', ...registerArgs(DISABLED), '--json'], { DEVICE_SYMMETRIC_KEY: disabledKey });
    expect(run.code, run.stderr).toBe(8);
    expect(JSON.parse(run.stdout)).toMatchObject({ ok: false, code: 'disabled', exitCode: 8, dpsStatus: 'disabled' });
    expect((await flow.webhookLog()).length).toBe(seen);
  }, 180_000);

  test('without --ca the local DPS\'s certificate is not trusted: exit 4 (unreachable), with the hint', async () => {
    const run = await runPy(['register', ...registerArgs(INDIVIDUAL).filter((a, i, all) => a !== '--ca' && all[i - 1] !== '--ca')], { DEVICE_SYMMETRIC_KEY: individualKey });
    expect(run.code, run.stderr).toBe(4);
    expect(run.stderr).toContain(`cannot reach DPS at ${dpsAddress} over mqtt: its TLS certificate is not trusted`);
    expect(run.stderr).toContain('hint: For a local DPS pass its CA certificate with --ca FILE.');
  }, 180_000);

  test('a hub that does not know the key: `connect` exits 12 (hub_unauthorized)', async () => {
    const hub = flow.dps!.registrations().find((r) => r.registrationId === INDIVIDUAL)!.assignedHub!;
    const run = await runPy(['connect', '--hub', hub, '--device-id', INDIVIDUAL, '--hub-host', hubAddress, '--ca', flow.dps!.caFile, '--count', '1'], { DEVICE_SYMMETRIC_KEY: randomKey() });
    expect(run.code, run.stderr).toBe(12);
    expect(run.stderr).toContain(`the hub refused ${INDIVIDUAL} on ${hub} via ${hubAddress}: not authorized (CONNACK 5)`);
  }, 180_000);

  test('no key, token or SAS in anything the sample printed, nor in the webhook\'s or the DPS\'s log', async () => {
    const printed = outputs.join('\n');
    expect(printed).toContain(INDIVIDUAL);
    const logs = await flow.allLogText();
    for (const secret of [individualKey, groupKey, strangerKey, disabledKey]) {
      expect(printed).not.toContain(secret);
      expect(logs).not.toContain(secret);
    }
    expect(printed).not.toMatch(/eyJ[\w-]+\.eyJ[\w-]+/); // no JWT
    expect(printed).not.toMatch(/SharedAccessSignature|sig=/);
    expect(printed).not.toMatch(/PRIVATE KEY/);
  });
});

// MQTT over WebSockets (`--websockets`): test/sample-device-py/websockets.test.ts.
