import { describe, expect, test } from 'vitest';
import { deriveDeviceKey } from '../../sample-device/jwt.js';
import { SampleDeviceError } from '../../sample-device/errors.js';

describe('deriveDeviceKey', () => {
  test('matches the documented enrollment-group vector (dps-protocol §3)', () => {
    expect(
      deriveDeviceKey('8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==', 'sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6'),
    ).toBe('Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=');
  });

  test('depends on the registration id', () => {
    const group = '8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==';
    expect(deriveDeviceKey(group, 'sensor-1')).not.toBe(deriveDeviceKey(group, 'sensor-2'));
  });

  test('refuses a group key that is not base64, without echoing it', () => {
    const secretish = 'not-a-key!!';
    let error: unknown;
    try {
      deriveDeviceKey(secretish, 'sensor-1');
    } catch (e) {
      error = e;
    }
    expect((error as SampleDeviceError).code).toBe('usage');
    expect((error as Error).message).toMatch(/^--group-key /);
    expect((error as Error).message).not.toContain(secretish);
  });
});
