import { describe, expect, test } from 'vitest';
import { parseDpsHost } from '../../sample-device/transport.js';

describe('parseDpsHost', () => {
  test.each([
    ['global.azure-devices-provisioning.net', { host: 'global.azure-devices-provisioning.net', hostname: 'global.azure-devices-provisioning.net' }],
    ['localhost:8443', { host: 'localhost:8443', hostname: 'localhost', port: 8443 }],
    // URL would drop :443 as the https default; the user's port is kept.
    ['localhost:443', { host: 'localhost:443', hostname: 'localhost', port: 443 }],
    ['[::1]:8883', { host: '[::1]:8883', hostname: '::1', port: 8883 }],
  ])('%s', (input, expected) => {
    expect(parseDpsHost(input)).toEqual(expected);
  });

  test.each(['https://localhost:8443', 'localhost/path', 'user@localhost', 'localhost:0', 'localhost:99999', '', 'a b'])('rejects %j naming --host', (input) => {
    expect(() => parseDpsHost(input)).toThrow(/^--host /);
  });
});
