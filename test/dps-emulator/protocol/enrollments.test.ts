import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EnrollmentsError, validateEnrollments } from '../../../dps-emulator/protocol/enrollments.js';
import { loadEnrollments } from '../../../dps-emulator/index.js';

const KEY = Buffer.alloc(32, 1).toString('base64');
const individual = (id: string, extra: Record<string, unknown> = {}) => ({
  registrationId: id,
  attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: KEY, secondaryKey: KEY } },
  provisioningStatus: 'enabled',
  allocationPolicy: 'custom',
  customAllocationDefinition: { webhookUrl: 'http://localhost:7071/api/validatejwt?code=k', apiVersion: '2021-10-01' },
  iotHubs: ['hub-eu.azure-devices.net'],
  ...extra,
});

function problems(doc: unknown): readonly string[] {
  try {
    validateEnrollments(doc);
  } catch (err) {
    if (err instanceof EnrollmentsError) return err.problems;
    throw err;
  }
  return [];
}

describe('enrollments validation', () => {
  it('accepts DPS-shaped individual enrollments and groups', () => {
    const doc = {
      individualEnrollments: [individual('sensor-0042', { deviceId: 'dev-42', initialTwin: { tags: { a: 1 } } })],
      enrollmentGroups: [{ ...individual('x'), registrationId: undefined, enrollmentGroupId: 'factory-line-7', reprovisionPolicy: { updateHubAssignment: true, migrateDeviceData: false } }],
    };
    expect(problems(doc)).toEqual([]);
  });

  it('names the field path of a key that is not base64', () => {
    const doc = { individualEnrollments: [individual('a'), individual('b'), individual('c', { attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: 'not base64!' } } })] };
    expect(problems(doc)).toEqual(['individualEnrollments[2].attestation.symmetricKey.primaryKey must be base64']);
  });

  it('reports every problem at once', () => {
    const doc = {
      individualEnrollments: [individual('bad id!', { iotHubs: [] }), individual('ok', { provisioningStatus: 'on' })],
      enrollmentGroups: [{ enrollmentGroupId: 'g', attestation: { type: 'x509' }, iotHubs: ['h.net'] }],
    };
    const list = problems(doc);
    expect(list).toContain('individualEnrollments[0].registrationId must be 1-128 characters of A-Z a-z 0-9 - . _ :, ending in a letter, digit or -');
    expect(list).toContain('individualEnrollments[0].iotHubs must be a non-empty array of IoT hub host names');
    expect(list).toContain('individualEnrollments[1].provisioningStatus must be "enabled" or "disabled"');
    expect(list).toContain('enrollmentGroups[0].attestation.type must be "symmetricKey" (the local DPS supports no other attestation)');
  });

  it('refuses a webhook off loopback: the local DPS never calls out', () => {
    const doc = { individualEnrollments: [individual('a', { customAllocationDefinition: { webhookUrl: 'https://app.azurewebsites.net/api/validatejwt', apiVersion: '2021-10-01' } })] };
    expect(problems(doc)[0]).toMatch(/^individualEnrollments\[0\]\.customAllocationDefinition\.webhookUrl must point at a loopback host/);
  });

  it('requires customAllocationDefinition for custom allocation', () => {
    const doc = { individualEnrollments: [individual('a', { customAllocationDefinition: undefined })] };
    expect(problems(doc)[0]).toMatch(/^individualEnrollments\[0\]\.customAllocationDefinition must be an object/);
  });

  it('refuses the same registration id twice, ignoring case', () => {
    expect(problems({ individualEnrollments: [individual('Sensor-1'), individual('sensor-1')] })).toEqual([
      'individualEnrollments[1].registrationId repeats individualEnrollments[0].registrationId (registration ids are case-insensitive)',
    ]);
  });

  it('refuses unknown top-level fields and an empty file', () => {
    expect(problems({ individualEnrollment: [] })[0]).toMatch(/^individualEnrollment is not a known field/);
    expect(problems({})[0]).toMatch(/both empty/);
  });
});

describe('loadEnrollments', () => {
  it('names the file when it is not JSON or does not exist', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'enr-'));
    const path = join(dir, 'enrollments.json');
    await writeFile(path, '{ "individualEnrollments": [ ');
    await expect(loadEnrollments(path)).rejects.toThrow(`${path}: invalid enrollments:\n  - is not valid JSON`);
    await expect(loadEnrollments(join(dir, 'missing.json'))).rejects.toThrow(/cannot read the file \(ENOENT\)/);
  });
});

describe('docs/local-dps.md', () => {
  it('its example enrollments file is valid once the key placeholders are filled', async () => {
    const { readFile } = await import('node:fs/promises');
    const md = await readFile(new URL('../../../docs/local-dps.md', import.meta.url), 'utf8');
    const json = /```json\n([\s\S]*?)```/.exec(md)![1]!.replace(/<base64[^>]*>/g, Buffer.alloc(32, 3).toString('base64')).replace('<function key>', 'k');
    expect(problems(JSON.parse(json))).toEqual([]);
  });
});
