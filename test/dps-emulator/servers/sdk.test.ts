/**
 * The official Azure IoT SDK (unmodified) registers against the local DPS over HTTPS and MQTT, with a scripted
 * loopback webhook behind it. Each test asserts what a device or its operator would see.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalDps, type LocalDps, type EnrollmentsFile, type IndividualEnrollment } from '../../../dps-emulator/index.js';
import { deriveDeviceKey } from '../../../dps-emulator/protocol/sas.js';
import { closedPort } from '../../support/ports.js';
import { registerWithSdk, startWebhook, TRANSPORTS, type FakeWebhook } from '../helpers.js';

const KEY = Buffer.alloc(32, 7).toString('base64');
const GROUP_KEY = Buffer.alloc(64, 9).toString('base64');
const HUBS = ['hub-eu.azure-devices.net', 'hub-us.azure-devices.net'];
const SCENARIOS = ['ok', 'nohub', 'unauth', 'forbidden', 'retry', 'wrongkey', 'disabled', 'rereg', 'down'];
const ENROLLMENT_TWIN = { tags: { from: 'enrollment' } };

let dps: LocalDps;
let hook: FakeWebhook;
const lines: string[] = [];

beforeAll(async () => {
  hook = await startWebhook();
  const downUrl = `http://127.0.0.1:${await closedPort()}/api/validatejwt?code=SECRET-FUNCTION-KEY`;
  const individual = (id: string): IndividualEnrollment => ({
    registrationId: id,
    attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: KEY, secondaryKey: Buffer.alloc(32, 8).toString('base64') } },
    provisioningStatus: id.endsWith('-disabled') ? 'disabled' : 'enabled',
    allocationPolicy: 'custom',
    customAllocationDefinition: { webhookUrl: id.endsWith('-down') ? downUrl : hook.url, apiVersion: '2021-10-01' },
    iotHubs: HUBS,
  });
  const enrollments: EnrollmentsFile = {
    individualEnrollments: TRANSPORTS.flatMap((t) => SCENARIOS.map((s) => individual(`${t}-${s}`))),
    enrollmentGroups: [
      {
        enrollmentGroupId: 'factory-line-7',
        attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: GROUP_KEY } },
        allocationPolicy: 'custom',
        customAllocationDefinition: { webhookUrl: hook.url, apiVersion: '2021-10-01' },
        iotHubs: HUBS,
        initialTwin: ENROLLMENT_TWIN,
      },
    ],
  };
  dps = await startLocalDps({
    enrollments,
    retryAfterSeconds: 1,
    webhookRetry: { attempts: 3, firstDelayMs: 20, incrementMs: 20 },
    webhookTimeoutMs: 2000,
    log: (l) => lines.push(l),
  });
});

afterAll(async () => {
  await dps?.close();
  await hook?.close();
});

const record = (id: string) => dps.registrations().filter((r) => r.registrationId === id).at(-1)!;
const rejection = async (p: Promise<unknown>): Promise<any> => {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('registration unexpectedly succeeded');
};

describe.each(TRANSPORTS)('SDK over %s', (tr) => {
  it('individual enrollment: assigned, the webhook payload reaches the device, the webhook saw the JWT payload', async () => {
    const id = `${tr}-ok`;
    const twin = { tags: { model: 's1' }, properties: { desired: { telemetryInterval: 30 } } };
    hook.answer(id, { status: 200, body: { iotHubHostName: HUBS[1], initialTwin: twin, payload: { welcome: id } } });
    const state = await registerWithSdk(dps, tr, id, KEY, { jwt: 'eyJhbGciOiJFUzI1NiJ9.e30.sig' });
    expect(state).toMatchObject({ registrationId: id, assignedHub: HUBS[1], deviceId: id, status: 'assigned', substatus: 'initialAssignment', payload: { welcome: id } });

    const call = hook.calls.filter((c) => c.body.deviceRuntimeContext.registrationId === id).at(-1)!;
    expect(call.url).toBe('/api/validatejwt?code=SECRET-FUNCTION-KEY');
    expect(call.headers['content-type']).toBe('application/json');
    expect(call.body.deviceRuntimeContext).toEqual({ registrationId: id, symmetricKey: {}, payload: { jwt: 'eyJhbGciOiJFUzI1NiJ9.e30.sig' } });
    expect(call.body.individualEnrollment.registrationId).toBe(id);
    expect(JSON.stringify(call.body)).not.toContain(KEY);
    expect(record(id)).toMatchObject({ status: 'assigned', assignedHub: HUBS[1], initialTwin: twin, payload: { welcome: id }, webhookAttempts: 1 });
  });

  it('group enrollment: the derived device key registers; deviceId = registration id; the enrollment twin is kept', async () => {
    const id = `${tr}-sn-0001`;
    hook.answer(id, { status: 200, body: { iotHubHostName: HUBS[0] } });
    const state = await registerWithSdk(dps, tr, id, deriveDeviceKey(GROUP_KEY, id));
    expect(state).toMatchObject({ assignedHub: HUBS[0], deviceId: id, status: 'assigned' });
    expect(state.payload).toBeUndefined();
    const call = hook.calls.filter((c) => c.body.deviceRuntimeContext.registrationId === id).at(-1)!;
    expect(call.body.enrollmentGroup.enrollmentGroupId).toBe('factory-line-7');
    expect(call.body.deviceRuntimeContext).not.toHaveProperty('payload');
    expect(record(id).initialTwin).toEqual(ENROLLMENT_TWIN);
  });

  it('a wrong key is refused with 401 (errorCode 401002) before any webhook call', async () => {
    const id = `${tr}-wrongkey`;
    const before = hook.calls.length;
    const err = await rejection(registerWithSdk(dps, tr, id, Buffer.alloc(32, 1).toString('base64')));
    expect(err.name).toBe('UnauthorizedError');
    if (tr === 'mqtt') expect(err.result).toMatchObject({ errorCode: 401002 });
    else expect(JSON.parse(err.responseBody)).toMatchObject({ errorCode: 401002 });
    expect(hook.calls.length).toBe(before);
  });

  it('a disabled enrollment ends "disabled"', async () => {
    const err = await rejection(registerWithSdk(dps, tr, `${tr}-disabled`, KEY));
    expect(err.result).toMatchObject({ status: 'disabled', registrationState: { status: 'disabled' } });
    expect(record(`${tr}-disabled`)).toMatchObject({ status: 'disabled', webhookAttempts: 0 });
  });

  it.each([
    ['200 without a hub', 'nohub', { status: 200, body: { initialTwin: null } }, 400208],
    ['401', 'unauth', { status: 401, body: {} }, 400209],
    ['403 (a refused device)', 'forbidden', { status: 403, body: { code: 'token_expired' } }, 400207],
  ])('webhook answers %s: registration fails with %s', async (_name, scenario, answer, errorCode) => {
    const id = `${tr}-${scenario}`;
    hook.answer(id, answer);
    const err = await rejection(registerWithSdk(dps, tr, id, KEY, { jwt: 'x' }));
    expect(err.name).toBe('ProvisioningRegistrationFailedError');
    expect(err.result).toMatchObject({ status: 'failed', registrationState: { registrationId: id, status: 'failed', errorCode } });
    expect(record(id)).toMatchObject({ status: 'failed', errorCode, webhookAttempts: 1 });
  });

  it('webhook answers 503 then 200: DPS retries and the device is assigned', async () => {
    const id = `${tr}-retry`;
    hook.answer(id, { status: 503 }, { status: 200, body: { iotHubHostName: HUBS[0] } });
    const state = await registerWithSdk(dps, tr, id, KEY, { jwt: 'x' });
    expect(state).toMatchObject({ assignedHub: HUBS[0], status: 'assigned' });
    expect(record(id)).toMatchObject({ webhookAttempts: 2, webhookStatuses: [503, 200] });
  });

  it('webhook down: retried on the schedule, then failed with 400207', async () => {
    const id = `${tr}-down`;
    const err = await rejection(registerWithSdk(dps, tr, id, KEY, { jwt: 'x' }));
    expect(err.result).toMatchObject({ status: 'failed', registrationState: { errorCode: 400207 } });
    expect(record(id)).toMatchObject({ status: 'failed', webhookAttempts: 3, webhookStatuses: ['network', 'network', 'network'] });
  });

  it('re-registration: the webhook is told the current hub; moving hubs reports deviceDataMigrated', async () => {
    const id = `${tr}-rereg`;
    hook.answer(id, { status: 200, body: { iotHubHostName: HUBS[0] } }, { status: 200, body: { iotHubHostName: HUBS[1] } });
    await registerWithSdk(dps, tr, id, KEY);
    const second = await registerWithSdk(dps, tr, id, KEY);
    expect(second).toMatchObject({ assignedHub: HUBS[1], substatus: 'deviceDataMigrated' });
    const call = hook.calls.filter((c) => c.body.deviceRuntimeContext.registrationId === id).at(-1)!;
    expect(call.body.deviceRuntimeContext).toMatchObject({ currentIotHubHostName: HUBS[0], currentDeviceId: id });
  });
});

describe('log lines', () => {
  it('one per outcome, with id, status, hub or error code and attempts; never a key, SAS, JWT or function key', () => {
    const text = lines.join('\n');
    expect(lines.some((l) => /^registration http-ok assigned hub=hub-us\.azure-devices\.net deviceId=http-ok .*webhookAttempts=1 \[200\] \d+ms via https$/.test(l))).toBe(true);
    expect(lines.some((l) => /^registration mqtt-down failed errorCode=400207 webhookAttempts=3 \[network,network,network\] \d+ms via mqtt$/.test(l))).toBe(true);
    for (const secret of ['SECRET-FUNCTION-KEY', 'code=', KEY, GROUP_KEY, 'eyJhbGciOiJFUzI1NiJ9', 'sig=', 'SharedAccessSignature sr']) {
      expect(text).not.toContain(secret);
    }
  });
});
