/**
 * The official Azure IoT Python SDK (azure-iot-device 2.14.0, python/requirements-device.txt), unmodified, against
 * the local DPS, the real webhook (the shipped bundle) and the local IoT Hub (issue 23). test/python-sdk/device.py
 * is the device: it registers over MQTT with a symmetric key and a {"jwt": ...} payload, then connects to the hub DPS
 * assigned, reads the twin the webhook set, follows a desired-property patch the back end pushes, and sends telemetry.
 *
 * Port: the SDK always connects to 8883, or 443 with `websockets=True` (wss at `/$iothub/websocket`), and takes no
 * port (mqtt_transport.py `connect`), so the DPS and the hub each listen on 8883 and 443 at a loopback address of
 * their own (127.x.y.z, random per run, which Linux routes to `lo`), named in the local CA's certificate. The device
 * is given that address as `provisioning_host` and `gateway_hostname`, and the CA as `server_verification_cert`, as
 * a user of the SDK would. Binding 443 needs root, as the suite runs.
 */
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { importPKCS8, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { generateLocalTls } from '../../dps-emulator/tls.js';
import { group, HUBS, ID_SCOPE, individual, makeDevices, randomKey, startFlow, type Device, type Flow } from '../e2e/fixture.js';
import { mayBind443, onOwnLoopbackAddresses } from '../support/ports.js';
import { pythonEnvBin } from '../support/python.js';

const SCRIPT = join(import.meta.dirname, 'device.py');
const TEN_DAYS = 10 * 24 * 3600;
const individualKey = randomKey();
const groupKey = randomKey(64);
const INDIVIDUAL = 'py-sample-0001';
const MEMBER = 'py-line7-0002';
const STRANGER = 'py-wrong-key-0003';
const WS_INDIVIDUAL = 'py-ws-sample-0004';
const WS_MEMBER = 'py-ws-line7-0005';
const WS_STRANGER = 'py-ws-wrong-key-0006';

let flow: Flow;
let devices: Map<string, Device>;
let python: string;
let dpsAddress: string;
let hubAddress: string;
/** Start to `assigned` per case, as the Python script measured it. */
const times: { name: string; ms: number }[] = [];
/** Every token signed and everything the devices printed, for the secrets check. */
const tokens: string[] = [];
const outputs: string[] = [];

/** `websockets=True` needs 443 on the two addresses: root, as the suite runs; elsewhere those cases are skipped. */
const withWebSockets = mayBind443();

beforeAll(async () => {
  python = join(pythonEnvBin('requirements-device'), 'python');
  // The sample's tokens live 10 days; the webhook's cap must allow them (README: devices built for the sample).
  flow = await startFlow({ JWT_MAX_LIFETIME_SECONDS: String(TEN_DAYS) });
  devices = await makeDevices(flow.work, flow.keysDir, [INDIVIDUAL, MEMBER, STRANGER, WS_INDIVIDUAL, WS_MEMBER, WS_STRANGER]);
  const enrollments = {
    individualEnrollments: [
      individual(INDIVIDUAL, individualKey, flow.webhookUrl()),
      individual(WS_INDIVIDUAL, individualKey, flow.webhookUrl()),
      individual(STRANGER, randomKey(), flow.webhookUrl()),
      individual(WS_STRANGER, randomKey(), flow.webhookUrl()),
    ],
    enrollmentGroups: [group('factory-line-7', groupKey, flow.webhookUrl())],
  };
  // 8883 (and 443) on two loopback addresses of their own: the SDK cannot be given a port.
  ({ dpsAddress, hubAddress } = await onOwnLoopbackAddresses(async (dps, hub) => {
    const tls = await generateLocalTls(new Date(), [dps, hub]);
    const ws = withWebSockets ? { wsPort: 443, hubWsPort: 443 } : {};
    return flow.startDps(enrollments, { host: dps, mqttPort: 8883, hubListenHost: hub, hubPort: 8883, ...ws, tls });
  }));
}, 15 * 60_000);

afterAll(async () => {
  await flow?.close();
  if (times.length > 0) console.info(`python-sdk start to assigned: ${times.map((t) => `${t.name} ${t.ms} ms`).join(', ')}`);
});

/** The ECC-JWT sample's token (../shared/dps-protocol.md §6): ES256, iat, exp +10 days, provisioning_host, id_scope, registration_id. */
async function sampleToken(registrationId: string): Promise<string> {
  const key = await importPKCS8(await readFile(devices.get(registrationId)!.privateKeyFile, 'utf8'), 'ES256');
  const iat = Math.floor(Date.now() / 1000);
  return new SignJWT({ provisioning_host: dpsAddress, id_scope: ID_SCOPE, registration_id: registrationId })
    .setProtectedHeader({ alg: 'ES256', typ: 'JWT' })
    .setIssuedAt(iat)
    .setExpirationTime(iat + TEN_DAYS)
    .sign(key)
    .then((token) => (tokens.push(token), token));
}

type Event = { event: string } & Record<string, any>;

interface DeviceInput {
  registrationId: string;
  symmetricKey?: string;
  groupKey?: string;
  jwt: string | null;
  websockets?: boolean;
  hub?: { gatewayHost: string; telemetry: Record<string, unknown> };
}

/**
 * Runs device.py with `input` on stdin (never argv: it holds keys). `onEvent` sees each event as it arrives, so the
 * test can act on one (push the patch on `ready_for_patch`) instead of sleeping.
 */
function runDevice(input: DeviceInput, onEvent: (e: Event) => void = () => {}): Promise<{ code: number | null; events: Event[]; stderr: string }> {
  const child = spawn(python, [SCRIPT], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C.UTF-8' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const events: Event[] = [];
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
  createInterface({ input: child.stdout }).on('line', (line) => {
    const e = JSON.parse(line) as Event;
    events.push(e);
    onEvent(e);
  });
  const killer = setTimeout(() => child.kill('SIGKILL'), 120_000);
  child.stdin.end(JSON.stringify({ provisioningHost: dpsAddress, idScope: ID_SCOPE, caFile: flow.dps!.caFile, websockets: false, ...input }));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(killer);
      outputs.push(JSON.stringify(events), stderr);
      resolve({ code, events, stderr });
    });
  });
}

const CASES = [
  { over: 'MQTT', title: 'an individual enrollment, with the ECC-JWT sample\'s token', id: INDIVIDUAL, key: { symmetricKey: individualKey }, websockets: false },
  { over: 'MQTT', title: 'an enrollment group member, with a key it derives from the group key', id: MEMBER, key: { groupKey }, websockets: false },
  { over: 'MQTT over WebSockets (websockets=True)', title: 'an individual enrollment', id: WS_INDIVIDUAL, key: { symmetricKey: individualKey }, websockets: true },
  { over: 'MQTT over WebSockets (websockets=True)', title: 'an enrollment group member', id: WS_MEMBER, key: { groupKey }, websockets: true },
];

describe.each(CASES)('the unmodified Python SDK over $over: $title', ({ id, key, websockets }) => {
  test.skipIf(websockets && !withWebSockets)('registers (assigned by the webhook), then on its hub reads the twin the webhook set, follows a desired patch, sends telemetry', async () => {
    const dps = flow.dps!;
    const seen = (await flow.webhookLog()).length;
    let pushed: number | undefined;
    let pushError: unknown;
    const telemetry = { deviceId: id, temperature: 21.5, seq: 1 };
    let assigned: Event | undefined;
    // With websockets the SDK goes to 443 only, where nothing but the local DPS and hub's wss servers listen on these
    // addresses: getting through proves the WebSocket path.
    const run = await runDevice({ registrationId: id, ...key, websockets, jwt: await sampleToken(id), hub: { gatewayHost: hubAddress, telemetry } }, (e) => {
      if (e.event === 'assigned') assigned = e;
      if (e.event !== 'ready_for_patch' || assigned === undefined) return;
      try {
        // The back end's twin update, through the local hub's own API.
        pushed = dps.hub.updateDesired(assigned.assignedHub, assigned.deviceId, { telemetryInterval: 5 });
      } catch (err) {
        pushError = err;
      }
    });
    const byName = (name: string) => run.events.find((e) => e.event === name);
    expect(run.events.filter((e) => e.event === 'error')).toEqual([]);
    expect(run.code, run.stderr).toBe(0);
    expect(pushError).toBeUndefined();
    if (assigned === undefined) throw new Error('no assigned event');

    // DPS: assigned by the real webhook, to a linked hub, with the webhook's payload handed back.
    expect(assigned).toMatchObject({ status: 'assigned', deviceId: id, substatus: 'initialAssignment' });
    // The SDK hands the payload back as JSON text (RegistrationState.response_payload), not parsed.
    expect(typeof assigned.payload).toBe('string');
    expect(JSON.parse(assigned.payload as string)).toMatchObject({ algorithm: 'ES256' });
    expect(HUBS).toContain(assigned.assignedHub);
    expect((await flow.webhookLog()).slice(seen).map((l) => l.code)).toEqual(['assigned']);
    times.push({ name: id, ms: assigned.ms as number });

    // The hub: the twin the webhook set, then the patch as pushed, then the telemetry recorded.
    const record = dps.registrations().filter((r) => r.registrationId === id).at(-1)!;
    const webhookTwin = record.initialTwin as { properties: { desired: Record<string, unknown> } };
    expect(webhookTwin.properties.desired).toEqual({ telemetryInterval: 30 });
    expect(byName('twin')!.desired).toEqual({ telemetryInterval: 30, $version: 1 });
    expect(pushed).toBe(2);
    expect(byName('patch')!.patch).toEqual({ telemetryInterval: 5, $version: 2 });
    expect(byName('telemetry_sent')).toBeDefined();
    const onHub = dps.hub.device(assigned.assignedHub, id)!;
    expect(onHub.twin.properties.desired).toMatchObject({ telemetryInterval: 5 });
    expect(onHub.telemetryCount).toBe(1);
    expect(JSON.parse(onHub.lastTelemetry!.body)).toEqual(telemetry);
    expect(onHub.lastTelemetry!.properties).toMatchObject({ source: 'python-sdk', '$.ct': 'application/json', '$.ce': 'utf-8' });
  }, 180_000);
});

describe('refusals the Python SDK reports', () => {
  const WRONG_KEY = [
    { over: 'MQTT', stranger: STRANGER, websockets: false },
    { over: 'MQTT over WebSockets', stranger: WS_STRANGER, websockets: true },
  ];
  test.for(WRONG_KEY)('a wrong key over $over: DPS refuses the SAS (401002) and the SDK raises its own ClientError; the webhook is never called', { timeout: 180_000 }, async ({ stranger, websockets }, ctx) => {
    if (websockets && !withWebSockets) ctx.skip();
    const seen = (await flow.webhookLog()).length;
    const run = await runDevice({ registrationId: stranger, symmetricKey: randomKey(), websockets, jwt: await sampleToken(stranger) });
    expect(run.code).toBe(1);
    expect(run.events.map((e) => e.event)).toEqual(['error']);
    // What the SDK raises from register() for a 401: ClientError("Unexpected failure") caused by its ServiceError
    // naming the status; it does not pass DPS's errorCode on (../shared/dps-protocol.md §7).
    expect(run.events[0]).toMatchObject({
      type: 'azure.iot.device.exceptions.ClientError',
      message: 'Unexpected failure',
      cause: 'azure.iot.device.exceptions.ServiceError',
    });
    expect(run.events[0]!.causeMessage).toContain('401');
    // Refused for its signature, not for anything else about the token the SDK made.
    expect(flow.dpsLog.filter((l) => l.includes(stranger))).toEqual([expect.stringMatching(/rejected errorCode=401002 \(SharedAccessSignature signature does not match\)/)]);
    expect((await flow.webhookLog()).length).toBe(seen);
    const last = flow.dps!.registrations().filter((r) => r.registrationId === stranger);
    expect(last).toEqual([]);
  });

  test('no key, token or SAS reached the webhook\'s or the DPS\'s log, nor the device\'s output', async () => {
    const logs = await flow.allLogText();
    expect(logs).toContain(INDIVIDUAL);
    for (const secret of [individualKey, groupKey, ...tokens]) expect(logs).not.toContain(secret);
    expect(logs).not.toMatch(/sig=|SharedAccessSignature sr=/);
    const output = outputs.join('\n');
    for (const secret of [individualKey, groupKey, ...tokens]) expect(output).not.toContain(secret);
  });
});

