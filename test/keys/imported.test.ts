import { jwtVerify } from 'jose';
import { expect, test } from 'vitest';
import { createWebhook } from '../../functions/app/compose.js';
import { loadConfig } from '../../functions/config.js';
import { createImportedKeys } from '../../functions/keys/imported.js';
import { parseKeyMaterial } from '../../functions/keys/parse.js';
import { allocationRequest, deviceToken, ID_SCOPE, keysDir, makeDevice } from '../support/devices.js';

test('keeps at most maxEntries keys imported, the most recently used, and imports each only once while kept', async () => {
  const devices = await Promise.all(['a', 'b', 'c'].map((id) => makeDevice(id)));
  const keys = await Promise.all(devices.map(async (d) => (await parseKeyMaterial(d.publicPem, ['ES256'], d.id))[0]!));
  const imported = createImportedKeys(2);
  const first = await imported.get(keys[0]!);
  expect(await imported.get(keys[0]!)).toBe(first);
  await imported.get(keys[1]!);
  await imported.get(keys[0]!);
  await imported.get(keys[2]!);
  expect(imported.size()).toBe(2);
  expect(await imported.get(keys[0]!)).toBe(first);
  const again = await imported.get(keys[1]!);
  const token = await deviceToken(devices[1]!, Math.floor(Date.now() / 1000));
  await expect(jwtVerify(token, again)).resolves.toBeDefined();
});

test('a P-256 key is found by its point: the same device read twice (two key objects) is imported once', async () => {
  const device = await makeDevice('twice');
  const [first] = await parseKeyMaterial(device.publicPem, ['ES256'], 'first.pem');
  const [second] = await parseKeyMaterial(device.publicPem, ['ES256'], 'second.pem');
  expect(second).not.toBe(first);
  const imported = createImportedKeys(2);
  const key = await imported.get(first!);
  expect(imported.get(second!)).toBe(key);
  expect(imported.size()).toBe(1);
  const other = await makeDevice('other');
  const [otherKey] = await parseKeyMaterial(other.publicPem, ['ES256'], 'other.pem');
  expect(await imported.get(otherKey!)).not.toBe(key);
  expect(imported.size()).toBe(2);
});

test('a key that cannot be imported refuses as device_key_unusable, for concurrent callers too', async () => {
  const imported = createImportedKeys(2);
  const broken = { alg: 'ES256', jwk: { kty: 'EC', crv: 'P-256', x: 'AAAA', y: 'AAAA' } };
  const [first, second] = [imported.get(broken), imported.get(broken)];
  await expect(first).rejects.toMatchObject({ code: 'device_key_unusable' });
  await expect(second).rejects.toMatchObject({ code: 'device_key_unusable' });
  expect(imported.size()).toBe(0);
});

test('with one key kept imported, many devices are still admitted, from cached JWKs, without re-reading the store', async () => {
  const devices = await Promise.all(Array.from({ length: 6 }, (_, i) => makeDevice(`dev-${i}`)));
  const webhook = await createWebhook(loadConfig({ DEVICE_KEYS_DIR: await keysDir(devices), DPS_ID_SCOPE: ID_SCOPE, KEY_CACHE_MAX_IMPORTED_KEYS: '1' }));
  const now = Math.floor(Date.now() / 1000);
  for (let round = 0; round < 2; round++) {
    for (const device of devices) {
      const answer = await webhook.handle({ body: JSON.stringify(allocationRequest({ registrationId: device.id, token: await deviceToken(device, now) })) });
      expect(answer.status).toBe(200);
    }
  }
  expect(webhook.keyCache.stats.reads).toBe(6);
  expect(webhook.importedKeys.size()).toBe(1);
});
