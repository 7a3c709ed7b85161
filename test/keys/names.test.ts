import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { deviceSecretName, groupSecretName } from '../../functions/keys/names.js';

const KEY_VAULT_NAME = /^[0-9a-zA-Z-]{1,127}$/;
const sha256 = (text: string): string => createHash('sha256').update(text, 'utf8').digest('hex');

describe('deviceSecretName / groupSecretName', () => {
  it('keeps a plain id readable', () => {
    expect(deviceSecretName('sensor-0042')).toBe('device-sensor-0042');
    expect(groupSecretName('factory-a')).toBe('group-factory-a');
  });

  it('lower-cases ids, since DPS registration ids and vault names are both case-insensitive', () => {
    expect(deviceSecretName('Sensor-0042')).toBe('device-sensor-0042');
    expect(deviceSecretName('SENSOR-0042')).toBe(deviceSecretName('sensor-0042'));
    expect(groupSecretName('Factory-A')).toBe('group-factory-a');
  });

  it.each(['sensor.0042', 'urn:dev:0042', 'sensor_0042', 'a'.repeat(120), 'Sensor_0042'])(
    'hashes an id that cannot be a vault name fragment: %s',
    (id) => {
      const name = deviceSecretName(id);
      expect(name).toBe(`devicehash-${sha256(id.toLowerCase())}`);
      expect(name).toMatch(KEY_VAULT_NAME);
      expect(groupSecretName(id)).toBe(`grouphash-${sha256(id.toLowerCase())}`);
    },
  );

  it('keeps the longest plain id (119 chars) readable and within the 127-char limit', () => {
    const id = 'b'.repeat(119);
    expect(deviceSecretName(id)).toBe(`device-${id}`);
    expect(deviceSecretName(id)).toMatch(KEY_VAULT_NAME);
    expect(groupSecretName(id)).toMatch(KEY_VAULT_NAME);
  });

  it('hashes case-insensitively: ids differing only in case share a secret', () => {
    expect(deviceSecretName('Sensor.0042')).toBe(deviceSecretName('sensor.0042'));
  });

  it('never lets a plain id collide with a hashed one', () => {
    // A plain id that spells out what a hashed name looks like still lands under the plain prefix.
    const hashed = deviceSecretName('sensor.0042');
    const lookalike = hashed.replace(/^device-?/, '');
    expect(deviceSecretName(lookalike)).not.toBe(hashed);
    expect(deviceSecretName(lookalike).startsWith('device-')).toBe(true);
    expect(hashed.startsWith('devicehash-')).toBe(true);
    // And "devicehash-..." can never be produced by the plain form, whose prefix is "device-" + id.
    expect(deviceSecretName(`hash-${sha256('sensor.0042')}`)).toBe(`device-hash-${sha256('sensor.0042')}`);
    expect(deviceSecretName(`hash-${sha256('sensor.0042')}`)).not.toBe(hashed);
  });

  it('keeps device and group names apart for the same id', () => {
    expect(deviceSecretName('same')).not.toBe(groupSecretName('same'));
    expect(deviceSecretName('same.id')).not.toBe(groupSecretName('same.id'));
  });

  it('gives distinct ids distinct names', () => {
    const ids = ['a', 'A.b', 'a.b', 'a_b', 'a:b', 'a-b', 'x'.repeat(119), 'x'.repeat(120)];
    const names = new Set(ids.map(deviceSecretName));
    // 'A.b' and 'a.b' are the same id to DPS, so 7 distinct names for 8 spellings.
    expect(names.size).toBe(7);
  });
});
