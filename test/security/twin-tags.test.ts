/**
 * Issue 13 item 8 and CONTRACTS 2: tags stored beside a device's key reach its twin by IoT Hub's twin key rules.
 * Names with ':', '@' or '+' (which the scripts accept) used to be dropped without a word; '.', '$', spaces and
 * controls are still refused, now with a log field; `desired.<prop>` becomes a desired property; the secret's own
 * tags (`public-key-sha256`, `file-encoding`) never reach the twin.
 */
import { expect, test } from 'vitest';
import { createWebhook } from '../../functions/app/compose.js';
import { loadConfig } from '../../functions/config.js';
import { parseKeyMaterial } from '../../functions/keys/parse.js';
import { allocationRequest, deviceToken, ID_SCOPE, makeDevice } from '../support/devices.js';

test('store tags become twin tags and desired properties by IoT Hub rules, end to end through the webhook', async () => {
  const device = await makeDevice('sensor-0042');
  const keys = await parseKeyMaterial(device.publicPem, ['ES256'], 'stand-in');
  const tags = {
    'site:building': 'b7',
    'owner@acme': 'ops',
    'c++': 'yes',
    'desired.mode': 'active',
    'desired.firmware:channel': 'stable',
    'public-key-sha256': 'ab'.repeat(32),
    'file-encoding': 'utf-8',
    'bad.name': 'x',
    'with space': 'x',
    $reserved: 'x',
  };
  const webhook = await createWebhook(loadConfig({ DEVICE_PUBLIC_KEY: device.publicPem, DPS_ID_SCOPE: ID_SCOPE }), {
    keyStore: { names: () => ['device-sensor-0042'], store: { read: async () => ({ keys, enabled: true, tags, origin: 'device-sensor-0042/v1' }) } },
  });
  const token = await deviceToken(device, Math.floor(Date.now() / 1000));
  const answer = await webhook.handle({ body: JSON.stringify(allocationRequest({ registrationId: device.id, token })) });
  expect(answer.status).toBe(200);
  const twin = (answer.body as { initialTwin: { tags: Record<string, unknown>; properties: { desired: Record<string, unknown> } } }).initialTwin;
  expect(twin.tags).toMatchObject({ 'site:building': 'b7', 'owner@acme': 'ops', 'c++': 'yes' });
  expect(Object.keys(twin.tags).sort()).toEqual(['c++', 'owner@acme', 'provisioning', 'site:building']);
  expect(twin.properties.desired).toEqual({ mode: 'active', 'firmware:channel': 'stable' });
  expect(answer.log.twinDropped).toEqual([
    'store tag "bad.name": name holds \'.\', \'$\', a space or a control character',
    'store tag "with space": name holds \'.\', \'$\', a space or a control character',
    'store tag "$reserved": name holds \'.\', \'$\', a space or a control character',
  ]);
});
