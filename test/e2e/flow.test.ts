/**
 * The whole flow with nothing stubbed: sample-device keys and `register` (official SDK) -> local DPS (HTTPS or MQTT,
 * SAS checked) -> real webhook over HTTP with its function key -> back to the device. Each test asserts what the
 * device's user (the outcome and its explanation) and the operator (the webhook's reason code, DPS's record) see.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { deriveDeviceKey, signDeviceToken } from '../../sample-device/jwt.js';
import { loadPrivateKeyFile } from '../../sample-device/key-file.js';
import { tamperWithClaims } from '../../demo/run.js';
import type { TransportKind } from '../../sample-device/transport.js';
import { closedPort } from '../support/ports.js';
import { group, HUBS, ID_SCOPE, individual, makeDevices, randomKey, startFlakyProxy, startFlow, type Device, type Flow } from './fixture.js';

const TRANSPORTS: TransportKind[] = ['http', 'mqtt'];
const GROUP = 'factory-line-7';
const individualKey = randomKey();
const groupKey = randomKey(64);

let flow: Flow;
let devices: Map<string, Device>;
let flaky: Awaited<ReturnType<typeof startFlakyProxy>>;
const device = (id: string): Device => devices.get(id)!;

beforeAll(async () => {
  flow = await startFlow();
  devices = await makeDevices(
    flow.work,
    flow.keysDir,
    ['sensor-0042', 'sensor-off', 'sensor-flaky', 'sensor-down', 'sensor-badcode', 'line7-0001', 'line7-0002', 'line7-0099'],
    ['line7-0099'],
  );
  flaky = await startFlakyProxy(flow.webhook.url, 1);
  const down = `http://127.0.0.1:${await closedPort()}/api/validatejwt`;
  await flow.startDps({
    individualEnrollments: [
      individual('sensor-0042', individualKey, flow.webhookUrl()),
      individual('sensor-off', individualKey, flow.webhookUrl(), { provisioningStatus: 'disabled' }),
      individual('sensor-flaky', individualKey, flow.webhookUrl(flaky.url)),
      individual('sensor-down', individualKey, flow.webhookUrl(down)),
      individual('sensor-badcode', individualKey, flow.webhookUrl(undefined, 'not-the-function-key')),
    ],
    enrollmentGroups: [group(GROUP, groupKey, flow.webhookUrl())],
  });
});

afterAll(async () => {
  await flaky?.close();
  await flow?.close();
});

describe.each(TRANSPORTS)('over %s', (transport) => {
  test('an individually enrolled device with its own token is assigned a linked hub and the initial twin', async () => {
    const { result, error, webhookReason } = await flow.register({
      registrationId: 'sensor-0042',
      privateKeyFile: device('sensor-0042').privateKeyFile,
      symmetricKey: individualKey,
      transport,
    });
    expect(error).toBeUndefined();
    expect(result).toMatchObject({ registrationId: 'sensor-0042', deviceId: 'sensor-0042', status: 'assigned', transport, attestation: 'symmetric-key' });
    expect(HUBS).toContain(result!.assignedHub);
    expect(result!.payload).toEqual(expect.any(Object));
    expect(webhookReason).toBe('assigned');

    const record = flow.dps!.registrations().filter((r) => r.registrationId === 'sensor-0042').at(-1)!;
    expect(record.status).toBe('assigned');
    expect(record.transport).toBe(transport === 'http' ? 'https' : 'mqtt');
    // The twin the hub would start from: the webhook's template (plus its provisioning tags).
    expect(record.initialTwin).toMatchObject({ tags: { model: 's1' }, properties: { desired: { telemetryInterval: 30 } } });
    // What the device put in the payload reached the webhook as deviceRuntimeContext.payload.jwt.
    const sent = record.allocationRequest?.deviceRuntimeContext.payload as { jwt?: unknown } | undefined;
    expect(typeof sent?.jwt).toBe('string');
  });

  test('a group member registers with the key derived from the group key', async () => {
    const { result, error, webhookReason } = await flow.register({
      registrationId: 'line7-0001',
      privateKeyFile: device('line7-0001').privateKeyFile,
      groupKey,
      transport,
    });
    expect(error).toBeUndefined();
    expect(result).toMatchObject({ deviceId: 'line7-0001', attestation: 'group-key' });
    expect(HUBS).toContain(result!.assignedHub);
    expect(webhookReason).toBe('assigned');
    expect(flow.dps!.registrations().at(-1)?.enrollment).toEqual({ kind: 'group', id: GROUP });
  });

  test('a token whose claims were edited after signing is refused (400207, exit 6)', async () => {
    const { result, error, webhookReason } = await flow.register({
      registrationId: 'sensor-0042',
      privateKeyFile: device('sensor-0042').privateKeyFile,
      symmetricKey: individualKey,
      transport,
      replaceToken: tamperWithClaims,
    });
    expect(result).toBeUndefined();
    expect(error).toMatchObject({ code: 'refused', exitCode: 6, dpsErrorCode: 400207 });
    expect(error!.message).toContain('the webhook refused this device (bad/expired token, unknown key, disabled key...)');
    expect(webhookReason).toBe('token_signature_invalid');
  });

  test("a device presenting another device's valid token is refused", async () => {
    const otherKey = await loadPrivateKeyFile(device('line7-0001').privateKeyFile);
    const { error, webhookReason } = await flow.register({
      registrationId: 'line7-0002',
      privateKeyFile: device('line7-0002').privateKeyFile,
      groupKey,
      transport,
      replaceToken: () => signDeviceToken({ privateKey: otherKey, registrationId: 'line7-0001', idScope: ID_SCOPE }),
    });
    expect(error).toMatchObject({ code: 'refused', dpsErrorCode: 400207 });
    // Checked against line7-0002's own key, line7-0001's signature cannot verify.
    expect(webhookReason).toBe('token_signature_invalid');
  });

  test('a device cannot sign a token naming another registration id', async () => {
    const ownKey = await loadPrivateKeyFile(device('line7-0002').privateKeyFile);
    const { error, webhookReason } = await flow.register({
      registrationId: 'line7-0002',
      privateKeyFile: device('line7-0002').privateKeyFile,
      groupKey,
      transport,
      replaceToken: () => signDeviceToken({ privateKey: ownKey, registrationId: 'line7-0001', idScope: ID_SCOPE }),
    });
    expect(error).toMatchObject({ code: 'refused', dpsErrorCode: 400207 });
    expect(webhookReason).toBe('token_registration_mismatch');
  });

  test('an enrolled device whose public key is not on file is refused', async () => {
    const { error, webhookReason } = await flow.register({
      registrationId: 'line7-0099',
      privateKeyFile: device('line7-0099').privateKeyFile,
      groupKey,
      transport,
    });
    expect(error).toMatchObject({ code: 'refused', exitCode: 6, dpsErrorCode: 400207 });
    expect(webhookReason).toBe('device_key_not_found');
  });

  test('an expired token is refused', async () => {
    const key = await loadPrivateKeyFile(device('sensor-0042').privateKeyFile);
    const { error, webhookReason } = await flow.register({
      registrationId: 'sensor-0042',
      privateKeyFile: device('sensor-0042').privateKeyFile,
      symmetricKey: individualKey,
      transport,
      replaceToken: () => signDeviceToken({ privateKey: key, registrationId: 'sensor-0042', idScope: ID_SCOPE, lifetimeSeconds: 60, now: Math.floor(Date.now() / 1000) - 3600 }),
    });
    expect(error).toMatchObject({ code: 'refused', dpsErrorCode: 400207 });
    expect(webhookReason).toBe('token_expired');
  });

  test('a wrong symmetric key stops at DPS (401002, exit 5) and never reaches the webhook', async () => {
    const { error, webhookCalls } = await flow.register({
      registrationId: 'sensor-0042',
      privateKeyFile: device('sensor-0042').privateKeyFile,
      symmetricKey: randomKey(),
      transport,
    });
    expect(error).toMatchObject({ code: 'unauthorized', exitCode: 5 });
    expect(error!.message).toContain('the symmetric key / SAS is wrong');
    expect(webhookCalls).toBe(0);
  });

  test('a disabled enrollment is reported as disabled (exit 8) without calling the webhook', async () => {
    const { error, webhookCalls } = await flow.register({
      registrationId: 'sensor-off',
      privateKeyFile: device('sensor-off').privateKeyFile,
      symmetricKey: individualKey,
      transport,
    });
    expect(error).toMatchObject({ code: 'disabled', exitCode: 8 });
    expect(webhookCalls).toBe(0);
  });

  test('a webhook URL without the right function key is 400209 (exit 7)', async () => {
    const { error, webhookCalls } = await flow.register({
      registrationId: 'sensor-badcode',
      privateKeyFile: device('sensor-badcode').privateKeyFile,
      symmetricKey: individualKey,
      transport,
    });
    expect(error).toMatchObject({ code: 'webhook_misconfigured', exitCode: 7, dpsErrorCode: 400209 });
    expect(error!.message).toContain('the webhook URL lacks a valid function key');
    // The host refuses before the webhook decides; its log says so.
    expect(webhookCalls).toBe(1);
    expect((await flow.webhookLog()).at(-1)).toMatchObject({ outcome: 'unauthorized', status: 401 });
  });

  test('nothing listening at the DPS address is unreachable (exit 4)', async () => {
    const { error } = await flow.register({
      registrationId: 'sensor-0042',
      privateKeyFile: device('sensor-0042').privateKeyFile,
      symmetricKey: individualKey,
      transport,
      host: `localhost:${await closedPort()}`,
    });
    expect(error).toMatchObject({ code: 'unreachable', exitCode: 4 });
    expect(error!.message).toContain('ECONNREFUSED');
  });

  test("without --ca the local DPS's certificate is not trusted, and the hint says --ca", async () => {
    const dps = flow.dps!;
    const { register } = await import('../../sample-device/commands/register.js');
    const error = await register({
      registrationId: 'sensor-0042',
      idScope: ID_SCOPE,
      privateKeyFile: device('sensor-0042').privateKeyFile,
      symmetricKey: individualKey,
      transport,
      host: transport === 'http' ? dps.httpsHost : dps.mqttHost,
    }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'unreachable', exitCode: 4 });
    expect((error as Error).message).toContain('TLS certificate is not trusted');
    expect((error as { hint?: string }).hint).toContain('--ca');
  });
});

describe('webhook availability', () => {
  test('a webhook answering 503 once is retried by DPS and the device is assigned', async () => {
    const { result, error } = await flow.register({
      registrationId: 'sensor-flaky',
      privateKeyFile: device('sensor-flaky').privateKeyFile,
      symmetricKey: individualKey,
      transport: 'mqtt',
    });
    expect(error).toBeUndefined();
    expect(HUBS).toContain(result!.assignedHub);
    expect(flaky.statuses).toEqual([503, 200]);
    expect(flow.dps!.registrations().at(-1)).toMatchObject({ registrationId: 'sensor-flaky', webhookAttempts: 2, webhookStatuses: [503, 200] });
  });

  test('a webhook that is down fails the registration once DPS has spent its retries', async () => {
    const { error } = await flow.register({
      registrationId: 'sensor-down',
      privateKeyFile: device('sensor-down').privateKeyFile,
      symmetricKey: individualKey,
      transport: 'http',
    });
    // The local DPS, like DPS (undocumented), ends this as 400207; DPS's own message tells it apart from a refusal.
    expect(error).toMatchObject({ code: 'refused', dpsErrorCode: 400207 });
    expect(error!.message).toMatch(/failed on all 3 attempts/);
    expect(flow.dps!.registrations().at(-1)).toMatchObject({ webhookAttempts: 3, webhookStatuses: ['network', 'network', 'network'] });
  });
});

test('no key, SAS, function key or token ever reached a webhook or DPS log line', async () => {
  const logs = await flow.allLogText();
  expect(logs.length).toBeGreaterThan(0);
  const secrets = [
    individualKey,
    groupKey,
    flow.functionKey,
    ...['line7-0001', 'line7-0002', 'line7-0099'].map((id) => deriveDeviceKey(groupKey, id)),
  ];
  for (const secret of secrets) expect(logs).not.toContain(secret);
  expect(logs).not.toMatch(/eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+/);
  // A SAS token, not the phrase "SharedAccessSignature signature does not match" DPS logs for a wrong key.
  expect(logs).not.toMatch(/SharedAccessSignature sr=|[?&]sig=/);
});
