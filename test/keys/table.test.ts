import { expect, test } from 'vitest';
import { parseKeyMaterial } from '../../functions/keys/parse.js';
import { P256Key } from '../../functions/keys/p256.js';
import { KeyTable } from '../../functions/keys/table.js';
import { NO_TAGS, type StoredKeySet } from '../../functions/keys/types.js';
import { makeDevice } from '../support/devices.js';

const p256Set = async (id: string): Promise<StoredKeySet> => {
  const device = await makeDevice(id);
  return { keys: await parseKeyMaterial(device.publicPem, ['ES256'], `${id}.pem`), enabled: true, tags: NO_TAGS, origin: `${id}.pem` };
};

test('a compact entry (one P-256 key, enabled, no tags) comes back as the same key set', async () => {
  const table = new KeyTable(10);
  const set = await p256Set('compact');
  table.set('device:compact', set, 5, 100);
  const slot = table.find('device:compact');
  const back = table.value(slot)!;
  expect(back).not.toBe(set);
  expect(back).toEqual({ keys: [expect.any(P256Key)], enabled: true, tags: NO_TAGS, origin: 'compact.pem' });
  expect((back.keys[0] as P256Key).point).toBe((set.keys[0] as P256Key).point);
  expect(back.keys[0]!.jwk).toEqual(set.keys[0]!.jwk);
  expect([table.readAt(slot), table.freshUntil(slot)]).toEqual([5, 100]);
});

test('any other entry keeps its own key set; a negative entry is undefined', async () => {
  const table = new KeyTable(10);
  const base = await p256Set('other');
  const tagged = { ...base, tags: { hub: 'a' } };
  const disabled = { ...base, keys: [], enabled: false };
  const withKid = { ...base, keys: [{ alg: 'ES256', jwk: base.keys[0]!.jwk, kid: 'k1' }] };
  const two = { ...base, keys: [base.keys[0]!, (await p256Set('second')).keys[0]!] };
  for (const [name, set] of Object.entries({ tagged, disabled, withKid, two })) table.set(name, set, 0, 1);
  table.set('absent', undefined, 0, 1);
  for (const [name, set] of Object.entries({ tagged, disabled, withKid, two })) expect(table.value(table.find(name))).toBe(set);
  expect(table.find('absent')).toBeGreaterThanOrEqual(0);
  expect(table.value(table.find('absent'))).toBeUndefined();
  expect(table.find('never')).toBe(-1);
});

test('keeps the most recently used maxEntries names, across its growth, and reuses the oldest slot', async () => {
  const set = await p256Set('lru');
  const table = new KeyTable(3000);
  for (let i = 0; i < 3000; i++) table.set(`n${i}`, { ...set, origin: `o${i}` }, i, i + 1);
  expect(table.size).toBe(3000);
  table.use('n0'); // n0 is now the newest: n1 goes first
  table.set('n3000', set, 0, 0);
  expect(table.size).toBe(3000);
  expect(table.find('n1')).toBe(-1);
  expect(table.value(table.find('n0'))!.origin).toBe('o0');
  expect(table.value(table.find('n2999'))!.origin).toBe('o2999');
  expect(table.readAt(table.find('n1234'))).toBe(1234);
  // Replacing a name keeps one entry for it, made newest.
  table.set('n2', { ...set, origin: 'again' }, 7, 8);
  expect(table.size).toBe(3000);
  table.set('n3001', set, 0, 0);
  expect(table.find('n2')).toBeGreaterThanOrEqual(0);
  expect(table.find('n3')).toBe(-1);
  expect(table.value(table.find('n2'))!.origin).toBe('again');
});

test('one entry at most: each new name takes the only slot', async () => {
  const set = await p256Set('one');
  const table = new KeyTable(1);
  table.set('a', set, 0, 0);
  table.set('b', undefined, 0, 0);
  expect(table.size).toBe(1);
  expect(table.find('a')).toBe(-1);
  expect(table.value(table.find('b'))).toBeUndefined();
  expect(() => new KeyTable(0)).toThrow(RangeError);
});
