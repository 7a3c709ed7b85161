import { describe, expect, test } from 'vitest';
import { TWIN_LIMITS } from '../../functions/core/policy.js';
import { buildInitialTwin, twinKeyProblem } from '../../functions/core/twin.js';

const facts = {
  enrollment: { kind: 'group' as const, id: 'factory-line-7' },
  keyId: 'k1',
  keyOrigin: 'device-sensor-1/abc',
  algorithm: 'ES256',
  provisionedAt: '2026-11-21T12:00:00.000Z',
};
const provisioning = { enrollmentType: 'group', enrollmentId: 'factory-line-7', keyId: 'k1', keySource: 'device-sensor-1/abc', algorithm: 'ES256', provisionedAt: '2026-11-21T12:00:00.000Z' };

/** Nested objects `levels` deep: { a: { a: ... { leaf: 1 } } }. */
function nested(levels: number): Record<string, unknown> {
  let value: Record<string, unknown> = { leaf: 1 };
  for (let i = 1; i < levels; i++) value = { a: value };
  return value;
}

test('the twin layers the template, the enrollment, the stored tags, then the provisioning facts', () => {
  const { twin, dropped } = buildInitialTwin(
    { tags: { site: 'default', model: 'generic', line: 'x' }, properties: { desired: { telemetryInterval: 30, mode: 'a' } } },
    { tags: { line: '7', model: 'enrolled' }, desired: { mode: 'b' } },
    { model: 's1', 'file-encoding': 'utf-8', 'public-key-sha256': 'ab'.repeat(32), 'bad.name': 'x', provisioning: 'spoofed' },
    facts,
  );
  expect(twin).toEqual({
    tags: { site: 'default', model: 's1', line: '7', provisioning },
    properties: { desired: { telemetryInterval: 30, mode: 'b' } },
  });
  // The secret's own tags are not device data and are not reported; names IoT Hub refuses are.
  expect(dropped).toEqual([
    'store tag "bad.name": name holds \'.\', \'$\', a space or a control character',
    'store tag "provisioning": reserved for the webhook',
  ]);
});

describe('store tag names follow IoT Hub twin key rules (CONTRACTS 2, issue 13 item 8)', () => {
  test("names with ':', '@' and '+' (which the scripts accept) reach the twin", () => {
    const tags = { 'site:building': 'b7', 'owner@acme': 'ops', 'c++': 'yes', 'ünïcode-名': 'ok', ['x'.repeat(1024)]: 'max' };
    const { twin, dropped } = buildInitialTwin({}, undefined, tags, facts);
    expect(twin.tags).toEqual({ ...tags, provisioning });
    expect(dropped).toEqual([]);
  });

  test("names with '.', '$', a space, a C0 or C1 control, over 1 KB, or empty are dropped, and reported", () => {
    const refused = ['a.b', '$x', 'a$', 'a b', 'tab\there', 'nul\u0000', 'c1\u0085', 'y'.repeat(1025), '', 'desired.', 'desired.a.b', 'desired.$v'];
    const { twin, dropped } = buildInitialTwin({}, undefined, Object.fromEntries(refused.map((n) => [n, 'v'])), facts);
    expect(twin.tags).toEqual({ provisioning });
    expect(twin.properties.desired).toEqual({});
    expect(dropped).toHaveLength(11); // ten reported, then "and 2 more"
    expect(dropped.at(-1)).toBe('and 2 more');
  });

  test('desired.<prop> becomes properties.desired.<prop> and wins over the enrollment and template', () => {
    const { twin } = buildInitialTwin(
      { properties: { desired: { mode: 'template', interval: 30 } } },
      { desired: { mode: 'enrollment' } },
      { 'desired.mode': 'activated', 'desired.firmware:channel': 'stable', site: 'b7' },
      facts,
    );
    expect(twin.properties.desired).toEqual({ mode: 'activated', interval: 30, 'firmware:channel': 'stable' });
    expect(twin.tags).toEqual({ site: 'b7', provisioning });
  });

  test('twinKeyProblem states the rule', () => {
    expect(twinKeyProblem('ok:1@2+3')).toBeUndefined();
    expect(twinKeyProblem('a.b')).toMatch(/'\.'/);
    expect(twinKeyProblem('\uD800')).toMatch(/UTF-8/);
    // DEL (U+007F) is a Unicode control character too, between the C0 and C1 segments.
    expect(twinKeyProblem('a\u007fb')).toMatch(/control character/);
  });
});

describe("IoT Hub's twin limits bound what the webhook answers (issue 13 item 4)", () => {
  test('an enrollment tag nested thousands deep is dropped; depth 10 is kept, 11 is not', () => {
    const deep = nested(5000);
    const { twin, dropped } = buildInitialTwin({}, { tags: { deep, ten: nested(TWIN_LIMITS.depth), eleven: nested(TWIN_LIMITS.depth + 1), site: 'b7' } }, {}, facts);
    expect(Object.keys(twin.tags)).toEqual(['ten', 'site', 'provisioning']);
    expect(() => JSON.stringify(twin)).not.toThrow();
    expect(dropped).toEqual(['tags."deep": nested over 10 deep', 'tags."eleven": nested over 10 deep']);
  });

  test('arrays, strings over 4 KB, integers beyond 2^52 and bad nested keys are dropped with their reason', () => {
    const { twin, dropped } = buildInitialTwin({}, {
      tags: { list: [1, 2], long: 'x'.repeat(4097), max: 'x'.repeat(4096), big: 2 ** 53, fine: 4503599627370495, real: 1.5, inner: { 'a.b': 1 }, ok: { 'a:b': true, n: null } },
      desired: { deepList: { a: [] } },
    }, {}, facts);
    expect(Object.keys(twin.tags)).toEqual(['max', 'fine', 'real', 'ok', 'provisioning']);
    expect(twin.properties.desired).toEqual({});
    expect(dropped).toEqual([
      'tags."list": arrays are not allowed',
      'tags."long": string over 4096 bytes',
      'tags."big": integer out of range',
      'tags."inner": name holds \'.\', \'$\', a space or a control character',
      'properties.desired."deepList": arrays are not allowed',
    ]);
  });

  test('tags are held to 8 KB: the device\'s stored tags and the provisioning tag win space over the enrollment', () => {
    const enrollment = { tags: { a: 'x'.repeat(3000), b: 'x'.repeat(3000), c: 'x'.repeat(3000) } };
    const store = { s1: 'y'.repeat(2000), s2: 'y'.repeat(2000) };
    const { twin, dropped } = buildInitialTwin({}, enrollment, store, facts);
    expect(Object.keys(twin.tags)).toEqual(['a', 's1', 's2', 'provisioning']);
    expect(Buffer.byteLength(JSON.stringify(twin.tags))).toBeLessThan(TWIN_LIMITS.tagsBytes + 200);
    expect(dropped).toEqual(['tags."b": tags would be over 8 KB', 'tags."c": tags would be over 8 KB']);
  });

  test('desired properties are held to 32 KB', () => {
    const desired = Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`p${i}`, 'z'.repeat(4000)]));
    const { twin, dropped } = buildInitialTwin({}, { desired }, {}, facts);
    expect(Object.keys(twin.properties.desired)).toHaveLength(8);
    expect(dropped).toHaveLength(2);
    expect(dropped[0]).toBe('properties.desired."p8": properties.desired would be over 32 KB');
  });
});

test('the template is not modified by building a twin', () => {
  const template = { tags: { a: 1 }, properties: { desired: { b: 2 } } };
  const { twin } = buildInitialTwin(template, undefined, { c: '3' }, facts);
  twin.properties.desired.x = 1;
  twin.tags.y = 1;
  expect(template).toEqual({ tags: { a: 1 }, properties: { desired: { b: 2 } } });
});

test('a __proto__ member is copied as plain data, never as a prototype', () => {
  const tags = JSON.parse('{"__proto__":{"polluted":"yes"},"site":"b7"}') as Record<string, unknown>;
  const { twin } = buildInitialTwin({}, { tags }, {}, facts);
  expect(Object.getPrototypeOf(twin.tags)).toBe(Object.prototype);
  expect(Object.hasOwn(twin.tags, '__proto__')).toBe(true);
  expect((twin.tags as { polluted?: unknown }).polluted).toBeUndefined();
});

test('INITIAL_TWIN_TEMPLATE entries IoT Hub would refuse stop the start, naming the setting and the entry', async () => {
  const { loadConfig } = await import('../../functions/config.js');
  const { mkdtempSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = mkdtempSync(join(tmpdir(), 'twin-template-'));
  const env = (template: unknown) => ({ DEVICE_KEYS_DIR: dir, DPS_ID_SCOPE: '0ne00ABC123', INITIAL_TWIN_TEMPLATE: JSON.stringify(template) });
  expect(() => loadConfig(env({ tags: { 'a.b': 1 } }))).toThrow(/INITIAL_TWIN_TEMPLATE: "tags\.a\.b": name holds/);
  expect(() => loadConfig(env({ properties: { desired: { list: [1] } } }))).toThrow(/INITIAL_TWIN_TEMPLATE: "properties\.desired\.list": arrays are not allowed/);
  expect(() => loadConfig(env({ tags: { deep: nested(11) } }))).toThrow(/nested over 10 deep/);
  expect(loadConfig(env({ tags: { 'site:b': { a: 1 } }, properties: { desired: { interval: 30 } } })).twinTemplate).toEqual({ tags: { 'site:b': { a: 1 } }, properties: { desired: { interval: 30 } } });
});
