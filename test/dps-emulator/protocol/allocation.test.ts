import { describe, expect, it } from 'vitest';
import {
  buildAllocationRequest,
  decideFromWebhook,
  DPS_RETRY_SCHEDULE,
  hashedHub,
  retryDelayMs,
  substatusFor,
  type WebhookAttempt,
} from '../../../dps-emulator/protocol/allocation.js';
import { DPS_ERRORS } from '../../../dps-emulator/protocol/errors.js';
import type { EnrollmentGroup, IndividualEnrollment } from '../../../dps-emulator/protocol/enrollments.js';

const PRIMARY = Buffer.alloc(32, 1).toString('base64');
const SECONDARY = Buffer.alloc(32, 2).toString('base64');
const HUBS = ['hub-eu.azure-devices.net', 'hub-us.azure-devices.net'];
const meta = { loadedAtUtc: '2026-08-03T17:15:10.846Z' };
const common = {
  attestation: { type: 'symmetricKey' as const, symmetricKey: { primaryKey: PRIMARY, secondaryKey: SECONDARY } },
  allocationPolicy: 'custom' as const,
  customAllocationDefinition: { webhookUrl: 'http://127.0.0.1:7071/api/validatejwt?code=FUNCTION-KEY', apiVersion: '2021-10-01' },
  iotHubs: HUBS,
};
const individual: IndividualEnrollment = { registrationId: 'sensor-0042', deviceId: 'dev-42', initialTwin: { tags: { model: 's1' } }, ...common };
const group: EnrollmentGroup = { enrollmentGroupId: 'factory-line-7', ...common };

describe('AllocationRequest', () => {
  it('for an individual enrollment: its public fields, never its keys or function key, and the device payload', () => {
    const req = buildAllocationRequest({
      resolved: { kind: 'individual', enrollment: individual },
      registrationId: 'sensor-0042',
      devicePayload: { jwt: 'eyJ.x.y' },
      previous: undefined,
      meta,
    });
    expect(Object.keys(req).sort()).toEqual(['deviceRuntimeContext', 'individualEnrollment', 'linkedHubs']);
    expect(req.individualEnrollment).toMatchObject({
      registrationId: 'sensor-0042',
      deviceId: 'dev-42',
      attestation: { type: 'symmetricKey' },
      capabilities: { iotEdge: false },
      provisioningStatus: 'enabled',
      reprovisionPolicy: { updateHubAssignment: true, migrateDeviceData: true },
      allocationPolicy: 'custom',
      iotHubs: HUBS,
      initialTwin: { tags: { model: 's1' } },
      customAllocationDefinition: { webhookUrl: 'http://127.0.0.1:7071/api/validatejwt?****', apiVersion: '2021-10-01' },
      createdDateTimeUtc: meta.loadedAtUtc,
    });
    expect(req.individualEnrollment!.etag).toMatch(/^"[0-9a-f-]{36}"$/);
    expect(req.deviceRuntimeContext).toEqual({ registrationId: 'sensor-0042', symmetricKey: {}, payload: { jwt: 'eyJ.x.y' } });
    expect(req.linkedHubs).toEqual(HUBS);
    const text = JSON.stringify(req);
    expect(text).not.toContain(PRIMARY);
    expect(text).not.toContain(SECONDARY);
    expect(text).not.toContain('FUNCTION-KEY');
  });

  it('for a group: enrollmentGroup only, and no payload field when the device sent none', () => {
    const req = buildAllocationRequest({ resolved: { kind: 'group', enrollment: group }, registrationId: 'sn-1', devicePayload: undefined, previous: undefined, meta });
    expect(req.individualEnrollment).toBeUndefined();
    expect(req.enrollmentGroup).toMatchObject({ enrollmentGroupId: 'factory-line-7', attestation: { type: 'symmetricKey' } });
    expect(req.enrollmentGroup).not.toHaveProperty('registrationId');
    expect(req.deviceRuntimeContext).toEqual({ registrationId: 'sn-1', symmetricKey: {} });
  });

  it('on re-registration: the current hub and device id', () => {
    const req = buildAllocationRequest({
      resolved: { kind: 'group', enrollment: group },
      registrationId: 'sn-1',
      devicePayload: { jwt: 't' },
      previous: { hub: HUBS[0]!, deviceId: 'sn-1', substatus: 'initialAssignment' },
      meta,
    });
    expect(req.deviceRuntimeContext).toEqual({
      registrationId: 'sn-1',
      currentIotHubHostName: HUBS[0],
      currentDeviceId: 'sn-1',
      symmetricKey: {},
      payload: { jwt: 't' },
    });
  });
});

describe('the webhook answer (§2 table)', () => {
  const ok = (body: unknown): WebhookAttempt => ({ kind: 'response', status: 200, body: JSON.stringify(body) });
  const status = (s: number): WebhookAttempt => ({ kind: 'response', status: s, body: '{}' });
  const code = (a: WebhookAttempt): number | string => {
    const d = decideFromWebhook(a, HUBS);
    return d.kind === 'failed' ? DPS_ERRORS[d.error].errorCode : d.kind;
  };

  it('200 with a linked hub assigns, carrying twin and payload; hub matched case-insensitively', () => {
    const d = decideFromWebhook(ok({ iotHubHostName: 'HUB-US.azure-devices.net', initialTwin: { tags: { t: 1 } }, payload: { p: 1 } }), HUBS);
    expect(d).toEqual({ kind: 'assigned', hub: 'hub-us.azure-devices.net', initialTwin: { tags: { t: 1 } }, payload: { p: 1 } });
  });

  it('200 with null twin and no payload assigns with neither', () => {
    expect(decideFromWebhook(ok({ iotHubHostName: HUBS[0], initialTwin: null }), HUBS)).toEqual({ kind: 'assigned', hub: HUBS[0], initialTwin: undefined, payload: undefined });
  });

  it.each([
    ['200 without a hub', ok({ initialTwin: {} }), 400208],
    ['200 with a hub outside linkedHubs', ok({ iotHubHostName: 'evil.azure-devices.net' }), 400208],
    ['401', status(401), 400209],
    ['400', status(400), 400207],
    ['403', status(403), 400207],
    ['404', status(404), 400207],
    ['302 (redirects are not followed)', status(302), 400207],
    ['204', status(204), 400207],
    ['200 with a body that is not JSON', { kind: 'response', status: 200, body: 'ok' } as WebhookAttempt, 400207],
    ['200 with a payload that is not an object', ok({ iotHubHostName: HUBS[0], payload: [1] }), 400207],
    ['429', status(429), 'retry'],
    ['500', status(500), 'retry'],
    ['503', status(503), 'retry'],
    ['no answer (connection refused)', { kind: 'network', reason: 'ECONNREFUSED' } as WebhookAttempt, 'retry'],
  ])('%s -> %s', (_name, attempt, expected) => {
    expect(code(attempt)).toBe(expected);
  });
});

describe('retry schedule and placement', () => {
  it('follows DPS: 10 tries, 1 s then +9 s', () => {
    expect(DPS_RETRY_SCHEDULE.attempts).toBe(10);
    expect([1, 2, 3, 4, 10].map((n) => retryDelayMs(DPS_RETRY_SCHEDULE, n))).toEqual([0, 1000, 10_000, 19_000, 73_000]);
  });

  it('substatus: first assignment, same hub again, moved with and without migration', () => {
    const prev = { hub: HUBS[0]!, deviceId: 'd', substatus: 'initialAssignment' as const };
    expect(substatusFor(undefined, HUBS[0]!, true)).toBe('initialAssignment');
    expect(substatusFor(prev, HUBS[0]!, true)).toBe('initialAssignment');
    expect(substatusFor(prev, HUBS[1]!, true)).toBe('deviceDataMigrated');
    expect(substatusFor(prev, HUBS[1]!, false)).toBe('deviceDataReset');
  });

  it('hashed allocation is stable and spreads evenly', () => {
    expect(hashedHub('Dev-1', HUBS)).toBe(hashedHub('dev-1', HUBS));
    const counts = new Map<string, number>();
    for (let i = 0; i < 2000; i++) counts.set(hashedHub(`dev-${i}`, HUBS), (counts.get(hashedHub(`dev-${i}`, HUBS)) ?? 0) + 1);
    for (const hub of HUBS) expect(counts.get(hub)).toBeGreaterThan(900);
  });
});
