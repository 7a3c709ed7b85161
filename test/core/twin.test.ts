import { expect, test } from 'vitest';
import { buildInitialTwin, twinTagsFromStore } from '../../functions/core/twin.js';

const facts = {
  enrollment: { kind: 'group' as const, id: 'factory-line-7' },
  keyId: 'k1',
  keyOrigin: 'device-sensor-1/abc',
  algorithm: 'ES256',
  provisionedAt: '2026-11-21T12:00:00.000Z',
};

test('the twin layers the template, the stored tags, then the provisioning facts', () => {
  const twin = buildInitialTwin(
    { tags: { site: 'default', model: 'generic', line: 'x' }, properties: { desired: { telemetryInterval: 30, mode: 'a' } } },
    { tags: { line: '7', model: 'enrolled' }, desired: { mode: 'b' } },
    { model: 's1', 'file-encoding': 'utf-8', 'bad.name': 'x', provisioning: 'spoofed' },
    facts,
  );
  expect(twin).toEqual({
    tags: {
      site: 'default',
      line: '7',
      model: 's1',
      provisioning: { enrollmentType: 'group', enrollmentId: 'factory-line-7', keyId: 'k1', keySource: 'device-sensor-1/abc', algorithm: 'ES256', provisionedAt: '2026-11-21T12:00:00.000Z' },
    },
    properties: { desired: { telemetryInterval: 30, mode: 'b' } },
  });
});

test('stored tags that are not legal twin tag names, or describe the secret, are left out', () => {
  expect(twinTagsFromStore({ 'file-encoding': 'utf-8', 'a b': '1', $x: '2', ok_1: '3', 'ok-2': '4' })).toEqual({ ok_1: '3', 'ok-2': '4' });
});

test('the template is not modified by building a twin', () => {
  const template = { tags: { a: 1 }, properties: { desired: { b: 2 } } };
  const twin = buildInitialTwin(template, undefined, { c: '3' }, facts);
  twin.properties.desired.x = 1;
  twin.tags.y = 1;
  expect(template).toEqual({ tags: { a: 1 }, properties: { desired: { b: 2 } } });
});
