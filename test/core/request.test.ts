import { describe, expect, test } from 'vitest';
import { WebhookError } from '../../functions/core/reasons.js';
import { asciiLower, parseAllocationRequest } from '../../functions/core/request.js';
import { allocationRequest, HUBS } from '../support/devices.js';

function refusal(body: unknown, contentType?: string): { code: string; message: string } {
  try {
    parseAllocationRequest(typeof body === 'string' ? body : JSON.stringify(body), contentType);
  } catch (error) {
    if (error instanceof WebhookError) return { code: error.code, message: error.message };
    throw error;
  }
  throw new Error('expected a refusal');
}

describe('parseAllocationRequest', () => {
  test('reads the §1 example', () => {
    const request = parseAllocationRequest(JSON.stringify(allocationRequest({ registrationId: 'sensor-0042', group: 'factory-line-7', token: 'a.b.c', currentHub: HUBS[0] })), 'application/json; charset=utf-8');
    expect(request).toEqual({
      registrationId: 'sensor-0042',
      enrollment: { kind: 'group', enrollmentGroupId: 'factory-line-7' },
      linkedHubs: HUBS,
      currentHub: HUBS[0],
      token: 'a.b.c',
      payloadKind: 'object',
    });
  });

  test("keeps the enrollment's initial twin (tags and desired properties only)", () => {
    const body = allocationRequest({ registrationId: 'a' });
    (body.individualEnrollment as Record<string, unknown>).initialTwin = { tags: { line: '7' }, properties: { desired: { x: 1 }, reported: { y: 2 } } };
    expect(parseAllocationRequest(JSON.stringify(body), undefined).enrollmentTwin).toEqual({ tags: { line: '7' }, desired: { x: 1 } });
    (body.individualEnrollment as Record<string, unknown>).initialTwin = 'not a twin';
    expect(parseAllocationRequest(JSON.stringify(body), undefined).enrollmentTwin).toBeUndefined();
  });

  test('takes a request without content type as JSON, and refuses another content type', () => {
    expect(parseAllocationRequest(JSON.stringify(allocationRequest({ registrationId: 'a' })), undefined).registrationId).toBe('a');
    expect(refusal(allocationRequest({ registrationId: 'a' }), 'text/plain').code).toBe('request_content_type');
  });

  test.each([
    ['not JSON', '{"enrollmentGroup":', 'request_not_json', 'not valid JSON'],
    ['an array', [], 'request_invalid', 'must be a JSON object'],
    ['both enrollments', { ...allocationRequest({ registrationId: 'a' }), enrollmentGroup: { enrollmentGroupId: 'g' } }, 'request_invalid', 'exactly one of individualEnrollment and enrollmentGroup'],
    ['neither enrollment', { deviceRuntimeContext: { registrationId: 'a' }, linkedHubs: HUBS }, 'request_invalid', 'exactly one of'],
    ['no deviceRuntimeContext', { individualEnrollment: { registrationId: 'a' }, linkedHubs: HUBS }, 'request_invalid', 'deviceRuntimeContext must be an object'],
    ['a numeric registration id', { ...allocationRequest({ registrationId: 'a' }), deviceRuntimeContext: { registrationId: 7 } }, 'request_invalid', 'deviceRuntimeContext.registrationId must be a string'],
    ['a registration id over 128 characters', allocationRequest({ registrationId: 'a'.repeat(129) }), 'request_invalid', 'deviceRuntimeContext.registrationId must be 1-128'],
    ['a registration id ending in a dot', allocationRequest({ registrationId: 'a.' }), 'request_invalid', 'registrationId'],
    ['empty linkedHubs', allocationRequest({ registrationId: 'a', linkedHubs: [] }), 'request_invalid', 'linkedHubs must be a non-empty array'],
    ['a hub that is not a host name', allocationRequest({ registrationId: 'a', linkedHubs: ['hub-a.azure-devices.net', 'http://evil/'] }), 'request_invalid', 'linkedHubs[1] must be a host name'],
    ['an enrollment for another registration', { ...allocationRequest({ registrationId: 'a' }), individualEnrollment: { registrationId: 'b' } }, 'request_invalid', 'individualEnrollment.registrationId must equal'],
    ['a group without its id', { ...allocationRequest({ registrationId: 'a', group: 'g' }), enrollmentGroup: {} }, 'request_invalid', 'enrollmentGroup.enrollmentGroupId must be a string'],
  ])('refuses %s', (_name, body, code, message) => {
    const got = refusal(body);
    expect(got.code).toBe(code);
    expect(got.message).toContain(message);
  });

  test('accepts the documented registration id alphabet, up to 128 characters', () => {
    for (const id of ['a', 'Sensor_01.line:7-', 'x'.repeat(128)]) {
      expect(parseAllocationRequest(JSON.stringify(allocationRequest({ registrationId: id })), undefined).registrationId).toBe(id);
    }
  });

  test('says whether a payload was sent and whether it is an object', () => {
    const kind = (payload: unknown) => parseAllocationRequest(JSON.stringify(allocationRequest({ registrationId: 'a', payload })), undefined).payloadKind;
    expect(kind(undefined)).toBe('absent');
    expect(kind({ jwt: 'x' })).toBe('object');
    expect(kind('eyJ...')).toBe('other');
  });
});

describe('asciiLower', () => {
  test('folds A-Z and nothing else', () => {
    expect(asciiLower('Device-AZ.09_:x')).toBe('device-az.09_:x');
    // KELVIN SIGN and dotted capital I lower-case to ASCII letters in Unicode; an id holding them is not an ASCII id.
    expect(asciiLower('\u212Aey-\u0130d')).toBe('\u212Aey-\u0130d');
    expect(asciiLower('\u212Aey') === 'key').toBe(false);
  });

  test('gives back an id without capitals as it is', () => {
    expect(asciiLower('sensor-0042')).toBe('sensor-0042');
    expect(asciiLower('')).toBe('');
  });
});
