import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { createWebhook } from '../../functions/app/compose.js';
import { loadConfig } from '../../functions/config.js';
import { allocationRequest, deviceToken, ID_SCOPE, keysDir, makeDevice, publicJwk } from '../support/devices.js';

const NOW = Date.parse('2026-11-21T12:00:00Z');
const now = Math.floor(NOW / 1000);

test("a JWKS holds several keys; the token's kid picks one; a new kid is picked up by re-reading, before the TTL", async () => {
  const [v1, v2, v3] = await Promise.all([makeDevice('sensor-9'), makeDevice('sensor-9'), makeDevice('sensor-9')]);
  const dir = await keysDir([]);
  const file = join(dir, 'sensor-9.json');
  await writeFile(file, JSON.stringify({ keys: [await publicJwk(v1, { kid: 'v1' }), await publicJwk(v2, { kid: 'v2' })] }));
  const webhook = await createWebhook(
    loadConfig({ DEVICE_KEYS_DIR: dir, DPS_ID_SCOPE: ID_SCOPE, KEY_CACHE_TTL_SECONDS: '3600', KEY_CACHE_UNKNOWN_KID_COOLDOWN_SECONDS: '0' }),
    { now: () => NOW },
  );
  const ask = async (token: string) => webhook.handle({ body: JSON.stringify(allocationRequest({ registrationId: 'sensor-9', token })) });

  const second = await ask(await deviceToken(v2, now, {}, { kid: 'v2' }));
  expect(second.status).toBe(200);
  expect(second.log.keyId).toBe('v2');
  expect(second.body).toMatchObject({ payload: { keyId: 'v2' } });

  // v1's key under v2's kid: the kid selects v2's key only, so the signature cannot verify.
  expect((await ask(await deviceToken(v1, now, {}, { kid: 'v2' }))).body).toMatchObject({ code: 'token_signature_invalid' });
  expect((await ask(await deviceToken(v3, now, {}, { kid: 'v3' }))).body).toMatchObject({ code: 'token_key_unknown' });

  await writeFile(file, JSON.stringify({ keys: [await publicJwk(v2, { kid: 'v2' }), await publicJwk(v3, { kid: 'v3' })] }));
  const rotated = await ask(await deviceToken(v3, now, {}, { kid: 'v3' }));
  expect(rotated.status).toBe(200);
  expect(rotated.log.keyId).toBe('v3');
});

test('a private JWK stored as a device key refuses the device rather than being used', async () => {
  const device = await makeDevice('sensor-10');
  const dir = await keysDir([]);
  const { exportJWK } = await import('jose');
  await writeFile(join(dir, 'sensor-10.jwk'), JSON.stringify(await exportJWK(device.privateKey)));
  const webhook = await createWebhook(loadConfig({ DEVICE_KEYS_DIR: dir, DPS_ID_SCOPE: ID_SCOPE }), { now: () => NOW });
  const answer = await webhook.handle({ body: JSON.stringify(allocationRequest({ registrationId: 'sensor-10', token: await deviceToken(device, now) })) });
  expect(answer.status).toBe(403);
  expect(answer.body).toMatchObject({ code: 'device_key_unusable' });
});
