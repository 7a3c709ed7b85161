import { describe, expect, test } from 'vitest';
import { explainRegistrationError, redact } from '../../sample-device/dps-errors.js';

// Shapes below are what the SDK 1.9 transports reject register() with (read from their source and seen against the
// local DPS); the SAS rides along in the HTTP request headers and must never reach the message.
const SAS = 'SharedAccessSignature sr=0ne00ABC123%2Fregistrations%2Fsensor-1&sig=abcdEFGH%2B123%3D&se=1795300000&skn=registration';
const context = { registrationId: 'sensor-1', host: 'localhost:8443', transport: 'http' };

function failed(errorCode: number, errorMessage = 'from DPS') {
  // PollingStateMachine: DeviceRegistrationFailedError with the final operation status as `result`.
  return Object.assign(new Error('registration failed'), {
    name: 'ProvisioningRegistrationFailedError',
    result: { operationId: 'op', status: 'failed', registrationState: { registrationId: 'sensor-1', status: 'failed', errorCode, errorMessage } },
    response: { statusCode: 200, req: { headers: { authorization: SAS } } },
  });
}

describe('explainRegistrationError', () => {
  test.each([
    [400207, 'refused', 6, /CustomAllocationFailed: the webhook refused this device \(bad\/expired token, unknown key, disabled key\.\.\.\)/],
    [400208, 'webhook_misconfigured', 7, /CustomAllocationIotHubNotSpecified/],
    [400209, 'webhook_misconfigured', 7, /the webhook URL lacks a valid function key/],
    [401002, 'unauthorized', 5, /the symmetric key \/ SAS is wrong/],
    [500000, 'dps_failed', 9, /DPS error 500000/],
  ] as const)('DPS error %i -> %s (exit %i)', (errorCode, code, exit, message) => {
    const error = explainRegistrationError(failed(errorCode, `DPS said ${errorCode}`), context);
    expect(error.code).toBe(code);
    expect(error.exitCode).toBe(exit);
    expect(error.dpsErrorCode).toBe(errorCode);
    expect(error.message).toMatch(message);
    expect(error.message).toContain(`DPS said ${errorCode}`);
  });

  test('an HTTP 401 error body (RestApiClient shape) is unauthorized, and the SAS stays out', () => {
    const error = Object.assign(new Error('Unauthorized'), {
      name: 'UnauthorizedError',
      responseBody: JSON.stringify({ errorCode: 401002, trackingId: 't', message: `Unauthorized ${SAS}`, timestampUtc: 'now' }),
      response: { statusCode: 401, req: { headers: { authorization: SAS } } },
    });
    const explained = explainRegistrationError(error, context);
    expect(explained.code).toBe('unauthorized');
    expect(explained.message).not.toContain('sig=abcd');
    expect(JSON.stringify({ ...explained, message: explained.message })).not.toContain('abcdEFGH');
  });

  test('an MQTT res/401 answer is unauthorized even without an error code', () => {
    const error = Object.assign(new Error('incoming message failure'), {
      name: 'UnauthorizedError',
      result: { message: 'Unauthorized' },
      transportObject: { topic: '$dps/registrations/res/401/?$rid=1', payload: {} },
    });
    expect(explainRegistrationError(error, { ...context, transport: 'mqtt' }).code).toBe('unauthorized');
  });

  test('a disabled registration is its own outcome (exit 8)', () => {
    // The SDK has no case for "disabled" and rejects with SyntaxError('status is disabled').
    const error = Object.assign(new SyntaxError('status is disabled'), { result: { operationId: 'op', status: 'disabled', registrationState: { status: 'disabled' } } });
    const explained = explainRegistrationError(error, context);
    expect(explained.code).toBe('disabled');
    expect(explained.exitCode).toBe(8);
  });

  test('socket and TLS failures under the MQTT wrapper are unreachable (exit 4)', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED'), { name: 'NotConnectedError', transportError: Object.assign(new Error('x'), { code: 'ECONNREFUSED' }) });
    expect(explainRegistrationError(refused, context)).toMatchObject({ code: 'unreachable', message: 'cannot reach DPS at localhost:8443 over http (ECONNREFUSED)' });
    const untrusted = Object.assign(new Error('unable to verify'), { code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' });
    const explained = explainRegistrationError(untrusted, context);
    expect(explained.code).toBe('unreachable');
    expect(explained.hint).toContain('--ca');
  });

  test('an unforeseen error is internal (exit 1) with a scrubbed message', () => {
    const explained = explainRegistrationError(new TypeError(`boom ${SAS}`), context);
    expect(explained.exitCode).toBe(1);
    expect(explained.message).not.toContain('abcdEFGH');
  });
});

test('redact removes SAS tokens and sig= values', () => {
  expect(redact(`x ${SAS} y`)).toBe('x SharedAccessSignature [redacted] y');
  expect(redact('https://h/p?sig=abc%2B&se=1')).toBe('https://h/p?sig=[redacted]&se=1');
});
