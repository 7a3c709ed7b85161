import { describe, expect, it } from 'vitest';
import type { WebhookAttempt } from '../../../dps-emulator/protocol/allocation.js';
import type { EnrollmentsFile } from '../../../dps-emulator/protocol/enrollments.js';
import { createSas, deriveDeviceKey } from '../../../dps-emulator/protocol/sas.js';
import { RegistrationService, type DeviceRequest, type HubAssignment, type PostWebhook, type RegistrationServiceOptions } from '../../../dps-emulator/protocol/service.js';

const SCOPE = '0ne00000000';
const IND_KEY = Buffer.alloc(32, 1).toString('base64');
const GROUP_KEY = Buffer.alloc(64, 2).toString('base64');
const HUBS = ['hub-eu.azure-devices.net', 'hub-us.azure-devices.net'];
const custom = { allocationPolicy: 'custom' as const, customAllocationDefinition: { webhookUrl: 'http://127.0.0.1:1/hook?code=FKEY', apiVersion: '2021-10-01' }, iotHubs: HUBS };
const enrollments: EnrollmentsFile = {
  individualEnrollments: [
    { registrationId: 'ind-1', attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: IND_KEY } }, ...custom },
    { registrationId: 'both-1', attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: IND_KEY } }, ...custom },
    { registrationId: 'off-1', provisioningStatus: 'disabled', attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: IND_KEY } }, ...custom },
    { registrationId: 'sticky-1', reprovisionPolicy: { updateHubAssignment: false }, attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: IND_KEY } }, ...custom },
  ],
  enrollmentGroups: [{ enrollmentGroupId: 'line-7', attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: GROUP_KEY } }, ...custom }],
};

function setup(
  script: (WebhookAttempt | 'hang')[],
  retry = { attempts: 4, firstDelayMs: 5, incrementMs: 5 },
  extra: Partial<Pick<RegistrationServiceOptions, 'maxRegistrations' | 'maxRecords' | 'onAssigned'>> = {},
) {
  const lines: string[] = [];
  const bodies: unknown[] = [];
  const post: PostWebhook = async (_url, body) => {
    bodies.push(body);
    const next = script.length > 1 ? script.shift()! : script[0]!;
    return next as WebhookAttempt;
  };
  const service = new RegistrationService({
    idScope: SCOPE, enrollments, retry, webhookTimeoutMs: 1000, retryAfterSeconds: 3, postWebhook: post, log: (l) => lines.push(l), ...extra,
  });
  const req = (id: string, key: string): DeviceRequest => ({ transport: 'https', idScope: SCOPE, registrationId: id, sas: createSas(SCOPE, id, key, Math.floor(Date.now() / 1000) + 600) });
  const until = async (id: string, key: string, opId: string) => {
    for (let i = 0; i < 200; i++) {
      const a = service.operationStatus(req(id, key), opId);
      if (a.status !== 202) return a;
      await new Promise((r) => setTimeout(r, 5));
    }
    throw new Error('still assigning');
  };
  const registerAndWait = async (id: string, key: string, payload?: unknown) => {
    const put = service.register(req(id, key), payload === undefined ? { registrationId: id } : { registrationId: id, payload });
    expect(put.status).toBe(202);
    return until(id, key, (put.body as { operationId: string }).operationId);
  };
  return { service, lines, bodies, req, registerAndWait };
}
const ok = (body: unknown): WebhookAttempt => ({ kind: 'response', status: 200, body: JSON.stringify(body) });
const s503: WebhookAttempt = { kind: 'response', status: 503, body: '' };

describe('registration service', () => {
  it('answers 202 assigning with Retry-After, then 200 with the registrationState', async () => {
    const t = setup([ok({ iotHubHostName: HUBS[1], payload: { hello: 'device' } })]);
    const put = t.service.register(t.req('ind-1', IND_KEY), { registrationId: 'ind-1', payload: { jwt: 'J' } });
    expect(put).toMatchObject({ status: 202, retryAfterSeconds: 3, body: { status: 'assigning' } });
    const done = await t.registerAndWait('ind-1', IND_KEY, { jwt: 'J' });
    expect(done.status).toBe(200);
    expect(done.body).toMatchObject({ status: 'assigned', registrationState: { registrationId: 'ind-1', assignedHub: HUBS[1], deviceId: 'ind-1', status: 'assigned', substatus: 'initialAssignment', payload: { hello: 'device' } } });
  });

  it('retries 503 on the schedule, then assigns; the record counts the attempts', async () => {
    const t = setup([s503, { kind: 'network', reason: 'ECONNREFUSED' }, ok({ iotHubHostName: HUBS[0] })]);
    const done = await t.registerAndWait('ind-1', IND_KEY);
    expect(done.body).toMatchObject({ status: 'assigned' });
    const rec = t.service.registrations().at(-1)!;
    expect(rec).toMatchObject({ status: 'assigned', webhookAttempts: 3, webhookStatuses: [503, 'network', 200] });
  });

  it('fails with 400207 once every attempt answered 503', async () => {
    const t = setup([s503]);
    const done = await t.registerAndWait('ind-1', IND_KEY);
    expect(done.body).toMatchObject({ status: 'failed', registrationState: { status: 'failed', errorCode: 400207 } });
    expect(t.service.registrations().at(-1)!.webhookAttempts).toBe(4);
    expect(t.lines.at(-1)).toMatch(/^registration ind-1 failed errorCode=400207 webhookAttempts=4 \[503,503,503,503\] \d+ms via https$/);
  });

  it('a disabled enrollment ends "disabled" without calling the webhook', async () => {
    const t = setup([ok({ iotHubHostName: HUBS[0] })]);
    const done = await t.registerAndWait('off-1', IND_KEY);
    expect(done.body).toMatchObject({ status: 'disabled', registrationState: { status: 'disabled' } });
    expect(t.bodies).toHaveLength(0);
  });

  it('an individual enrollment wins over a group: the group-derived key is refused for that id', async () => {
    const t = setup([ok({ iotHubHostName: HUBS[0] })]);
    expect(t.service.register(t.req('both-1', deriveDeviceKey(GROUP_KEY, 'both-1')), {}).status).toBe(401);
    await t.registerAndWait('both-1', IND_KEY);
    expect(t.bodies[0]).toHaveProperty('individualEnrollment.registrationId', 'both-1');
  });

  it('a group member registers with its derived key; deviceId is the registration id', async () => {
    const t = setup([ok({ iotHubHostName: HUBS[0] })]);
    const done = await t.registerAndWait('sn-77', deriveDeviceKey(GROUP_KEY, 'sn-77'));
    expect(done.body).toMatchObject({ registrationState: { deviceId: 'sn-77', assignedHub: HUBS[0] } });
    expect(t.bodies[0]).toHaveProperty('enrollmentGroup.enrollmentGroupId', 'line-7');
  });

  it('401002 for a wrong key, an unknown id and an expired token; logs name the id, never the token', () => {
    const t = setup([ok({})]);
    const wrongReq = t.req('ind-1', GROUP_KEY);
    const wrong = t.service.register(wrongReq, {});
    expect(wrong.status).toBe(401);
    expect(wrong.body).toMatchObject({ errorCode: 401002, message: 'Unauthorized' });
    expect(Object.keys(wrong.body as object).sort()).toEqual(['errorCode', 'message', 'timestampUtc', 'trackingId']);
    expect(t.service.register(t.req('nobody', IND_KEY), {}).status).toBe(401);
    const expired = { ...t.req('ind-1', IND_KEY), sas: createSas(SCOPE, 'ind-1', IND_KEY, Math.floor(Date.now() / 1000) - 1) };
    expect(t.service.register(expired, {}).status).toBe(401);
    expect(t.lines).toHaveLength(3);
    const sig = (token: string | undefined) => decodeURIComponent(/sig=([^&]+)/.exec(token ?? '')![1]!);
    for (const token of [wrongReq.sas, expired.sas]) expect(t.lines.join('\n')).not.toContain(sig(token));
    expect(t.lines.join('\n')).not.toMatch(/sig=|se=/);
    expect(t.lines[0]).toMatch(/^registration ind-1 rejected errorCode=401002/);
  });

  it('re-registration tells the webhook the current hub; a hub change is deviceDataMigrated', async () => {
    const t = setup([ok({ iotHubHostName: HUBS[0] }), ok({ iotHubHostName: HUBS[1] })]);
    await t.registerAndWait('ind-1', IND_KEY);
    const second = await t.registerAndWait('ind-1', IND_KEY);
    expect(t.bodies[1]).toMatchObject({ deviceRuntimeContext: { currentIotHubHostName: HUBS[0], currentDeviceId: 'ind-1' } });
    expect(second.body).toMatchObject({ registrationState: { assignedHub: HUBS[1], substatus: 'deviceDataMigrated' } });
  });

  it('updateHubAssignment=false keeps a provisioned device on its hub; the webhook is still asked, and may refuse (azure-cli-facts §4.2)', async () => {
    const t = setup([ok({ iotHubHostName: HUBS[0] }), ok({ iotHubHostName: HUBS[1] }), { kind: 'response', status: 403, body: '{"code":"token_expired"}' }]);
    await t.registerAndWait('sticky-1', IND_KEY);
    const second = await t.registerAndWait('sticky-1', IND_KEY);
    expect(second.body).toMatchObject({ registrationState: { assignedHub: HUBS[0], substatus: 'initialAssignment' } });
    expect(t.bodies).toHaveLength(2);
    expect(t.bodies[1]).toMatchObject({ deviceRuntimeContext: { currentIotHubHostName: HUBS[0] } });
    const third = await t.registerAndWait('sticky-1', IND_KEY);
    expect(third.body).toMatchObject({ status: 'failed', registrationState: { errorCode: 400207 } });
  });

  it('another registration cannot read an operation; a mismatched body id is a 400', async () => {
    const t = setup([ok({ iotHubHostName: HUBS[0] })]);
    const put = t.service.register(t.req('ind-1', IND_KEY), {});
    const opId = (put.body as { operationId: string }).operationId;
    expect(t.service.operationStatus(t.req('both-1', IND_KEY), opId).status).toBe(404);
    expect(t.service.register(t.req('both-1', IND_KEY), { registrationId: 'ind-1' }).status).toBe(400);
    await t.service.close();
  });

  it('close() does not wait out the DPS retry schedule', async () => {
    const t = setup([s503], { attempts: 10, firstDelayMs: 60_000, incrementMs: 9000 });
    t.service.register(t.req('ind-1', IND_KEY), {});
    await new Promise((r) => setTimeout(r, 20));
    const started = Date.now();
    await t.service.close();
    expect(Date.now() - started).toBeLessThan(500);
    expect(t.service.registrations()[0]).toMatchObject({ status: 'assigning', webhookAttempts: 1 });
  });

  it('hands each assignment to the hub: deviceId, the device keys (derived for a group member), the twin the webhook chose', async () => {
    const seen: HubAssignment[] = [];
    const twin = { tags: { a: 'b' }, properties: { desired: { telemetryInterval: 9 } } };
    const t = setup([ok({ iotHubHostName: HUBS[1], initialTwin: twin })], undefined, { onAssigned: (a) => seen.push(a) });
    await t.registerAndWait('sn-78', deriveDeviceKey(GROUP_KEY, 'sn-78'));
    expect(seen).toEqual([
      expect.objectContaining({ hub: HUBS[1], deviceId: 'sn-78', keys: [deriveDeviceKey(GROUP_KEY, 'sn-78')], initialTwin: twin, previous: undefined }),
    ]);
  });
});

describe('the local DPS bounds itself (issue 13 item 9)', () => {
  it('a group key holder cannot add registration ids without limit: past maxRegistrations a new id gets 429, known ids still register', async () => {
    const t = setup([ok({ iotHubHostName: HUBS[0] })], undefined, { maxRegistrations: 3 });
    for (const id of ['g-1', 'g-2', 'g-3']) await t.registerAndWait(id, deriveDeviceKey(GROUP_KEY, id));
    const refused = t.service.register(t.req('g-4', deriveDeviceKey(GROUP_KEY, 'g-4')), {});
    expect(refused).toMatchObject({ status: 429, retryAfterSeconds: 3, body: { errorCode: 429001 } });
    expect(t.service.registrationCount).toBe(3);
    const again = await t.registerAndWait('g-2', deriveDeviceKey(GROUP_KEY, 'g-2'));
    expect(again.body).toMatchObject({ status: 'assigned' });
  });

  it('records and operations are pruned to maxRecords, however often a device registers', async () => {
    const t = setup([ok({ iotHubHostName: HUBS[0] })], undefined, { maxRecords: 4 });
    for (let i = 0; i < 12; i++) await t.registerAndWait('ind-1', IND_KEY);
    expect(t.service.registrations()).toHaveLength(4);
    expect(t.service.operationCount).toBe(4);
  });

  it('refuses a fractional Retry-After: the Python SDK parses it with int() and hangs (issue 14 item 6)', () => {
    const post: PostWebhook = async () => ({ kind: 'network', reason: 'x' });
    const make = (retryAfterSeconds: number) =>
      new RegistrationService({ idScope: SCOPE, enrollments, retry: { attempts: 1, firstDelayMs: 0, incrementMs: 0 }, webhookTimeoutMs: 1000, retryAfterSeconds, postWebhook: post, log: () => {} });
    expect(() => make(0.2)).toThrow(/whole number of seconds/);
    expect(() => make(0)).toThrow(/whole number of seconds/);
    expect(() => make(2)).not.toThrow();
  });
});
