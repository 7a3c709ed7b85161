import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createWebhook, type Webhook } from '../../functions/app/compose.js';
import { loadConfig } from '../../functions/config.js';
import type { AssignedBody } from '../../functions/core/webhook.js';
import { allocationRequest, deviceToken, HUBS, ID_SCOPE, keysDir, makeDevice, signToken, deviceClaims, type TestDevice } from '../support/devices.js';

const NOW = Date.parse('2026-11-21T12:00:00Z');
const now = Math.floor(NOW / 1000);

let alice: TestDevice;
let bob: TestDevice;
let mallory: TestDevice;
let webhook: Webhook;

beforeAll(async () => {
  [alice, bob, mallory] = await Promise.all([makeDevice('sensor-0042'), makeDevice('sensor-0043'), makeDevice('not-enrolled')]);
  const dir = await keysDir([alice, bob]);
  webhook = await createWebhook(loadConfig({ DEVICE_KEYS_DIR: dir, DPS_ID_SCOPE: ID_SCOPE }), { now: () => NOW });
});
afterAll(() => webhook.close());

async function ask(request: unknown) {
  return webhook.handle({ body: JSON.stringify(request), contentType: 'application/json' });
}

describe('a device with its own fresh token', () => {
  test('is assigned a linked hub with a twin and a payload', async () => {
    const answer = await ask(allocationRequest({ registrationId: alice.id, token: await deviceToken(alice, now) }));
    expect(answer.status).toBe(200);
    const body = answer.body as AssignedBody;
    expect(HUBS).toContain(body.iotHubHostName);
    expect(body.initialTwin.tags.provisioning).toMatchObject({ enrollmentType: 'individual', enrollmentId: alice.id, algorithm: 'ES256', keySource: `${alice.id}.pem` });
    expect(body.payload).toEqual({ keyId: null, algorithm: 'ES256', serverTime: '2026-11-21T12:00:00.000Z' });
    expect(answer.log).toMatchObject({ registrationId: alice.id, outcome: 'assigned', code: 'assigned', hub: body.iotHubHostName });
  });

  test('registering in another letter case is the same registration', async () => {
    const token = await deviceToken(alice, now, { sub: 'SENSOR-0042', registration_id: 'Sensor-0042' });
    const answer = await ask(allocationRequest({ registrationId: 'SENSOR-0042', token }));
    expect(answer.status).toBe(200);
  });

  test('a Python-sample token (registration_id, id_scope, provisioning_host, iat, exp) is accepted', async () => {
    const token = await signToken(alice.privateKey, {
      registration_id: alice.id, id_scope: ID_SCOPE, provisioning_host: 'global.azure-devices-provisioning.net', iat: now, exp: now + 3600,
    });
    expect((await ask(allocationRequest({ registrationId: alice.id, token }))).status).toBe(200);
  });

  test('a group enrollment is assigned and named in the twin', async () => {
    const answer = await ask(allocationRequest({ registrationId: bob.id, group: 'factory-line-7', token: await deviceToken(bob, now) }));
    expect(answer.status).toBe(200);
    expect((answer.body as AssignedBody).initialTwin.tags.provisioning).toMatchObject({ enrollmentType: 'group', enrollmentId: 'factory-line-7' });
  });

  test('a re-registering device keeps its current hub while it is linked', async () => {
    for (const hub of HUBS) {
      const answer = await ask(allocationRequest({ registrationId: alice.id, currentHub: hub, token: await deviceToken(alice, now) }));
      expect((answer.body as AssignedBody).iotHubHostName).toBe(hub);
    }
  });
});

describe('refusals answer 4xx below 429 with their own code', () => {
  const cases: Array<[string, () => Promise<{ id: string; token: unknown; request?: Record<string, unknown> }>, string]> = [
    // Checked with alice's key, bob's token cannot verify: the binding never even gets a say.
    ['another device presents its own token', async () => ({ id: alice.id, token: await deviceToken(bob, now) }), 'token_signature_invalid'],
    ['a token signed by another key', async () => ({ id: alice.id, token: await signToken(mallory.privateKey, deviceClaims(alice, now)) }), 'token_signature_invalid'],
    ['a device with no key on file', async () => ({ id: mallory.id, token: await deviceToken(mallory, now) }), 'device_key_not_found'],
    ['registration_id names another device', async () => ({ id: alice.id, token: await deviceToken(alice, now, { registration_id: bob.id }) }), 'token_registration_mismatch'],
    ['neither sub nor registration_id', async () => ({ id: alice.id, token: await deviceToken(alice, now, { sub: undefined, registration_id: undefined }) }), 'token_claim_missing'],
    ['expired', async () => ({ id: alice.id, token: await deviceToken(alice, now - 1000, { exp: now - 120 }) }), 'token_expired'],
    ['issued in the future', async () => ({ id: alice.id, token: await deviceToken(alice, now + 600) }), 'token_issued_in_future'],
    ['not valid yet', async () => ({ id: alice.id, token: await deviceToken(alice, now, { nbf: now + 600 }) }), 'token_not_yet_valid'],
    ['lifetime over the cap', async () => ({ id: alice.id, token: await deviceToken(alice, now, { exp: now + 3601 }) }), 'token_lifetime_too_long'],
    ['no exp', async () => ({ id: alice.id, token: await deviceToken(alice, now, { exp: undefined }) }), 'token_claim_missing'],
    ['no iat', async () => ({ id: alice.id, token: await deviceToken(alice, now, { iat: undefined }) }), 'token_claim_missing'],
    ['another id scope', async () => ({ id: alice.id, token: await deviceToken(alice, now, { aud: '0ne00OTHER0', id_scope: '0ne00OTHER0' }) }), 'token_audience_mismatch'],
    ['no id scope at all', async () => ({ id: alice.id, token: await deviceToken(alice, now, { aud: undefined, id_scope: undefined }) }), 'token_claim_missing'],
    ['no payload', async () => ({ id: alice.id, token: undefined }), 'token_missing'],
    ['a jwt that is not a string', async () => ({ id: alice.id, token: 42 }), 'token_malformed'],
    ['an HS256 token', async () => ({ id: alice.id, token: await signToken(new TextEncoder().encode(alice.publicPem) as never, deviceClaims(alice, now), {}, 'HS256') }), 'token_algorithm_not_allowed'],
  ];

  test.each(cases)('%s', async (_name, make, code) => {
    const { id, token } = await make();
    const answer = await ask(allocationRequest({ registrationId: id, token }));
    expect(answer.body).toMatchObject({ code });
    expect(answer.status).toBeGreaterThanOrEqual(400);
    expect(answer.status).toBeLessThan(429);
  });

  test('changing any claim after signing breaks the signature', async () => {
    const token = await deviceToken(alice, now);
    const [header, , signature] = token.split('.');
    for (const change of [{ exp: now + 100 }, { sub: alice.id.toUpperCase() }, { aud: ID_SCOPE + 'x' }, { iat: now - 1 }]) {
      const claims = { ...deviceClaims(alice, now), ...change };
      const forged = `${header}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${signature}`;
      const answer = await ask(allocationRequest({ registrationId: alice.id, token: forged }));
      expect(answer.body).toMatchObject({ code: 'token_signature_invalid' });
    }
  });

  test('a flipped signature bit is refused', async () => {
    const token = await deviceToken(alice, now);
    const bytes = Buffer.from(token.split('.')[2]!, 'base64url');
    bytes[5]! ^= 1;
    const forged = token.split('.').slice(0, 2).join('.') + '.' + bytes.toString('base64url');
    expect((await ask(allocationRequest({ registrationId: alice.id, token: forged }))).body).toMatchObject({ code: 'token_signature_invalid' });
  });

  test('an alg header changed to none is refused before any key lookup', async () => {
    const token = await deviceToken(alice, now);
    const none = Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url');
    const answer = await ask(allocationRequest({ registrationId: alice.id, token: `${none}.${token.split('.')[1]}.` }));
    expect(answer.body).toMatchObject({ code: 'token_malformed' });
    const answer2 = await ask(allocationRequest({ registrationId: alice.id, token: `${none}.${token.split('.')[1]}.${token.split('.')[2]}` }));
    expect(answer2.body).toMatchObject({ code: 'token_algorithm_not_allowed' });
  });

  test('a malformed request is 400 and names the field', async () => {
    const request = allocationRequest({ registrationId: alice.id, token: 'x' });
    (request.deviceRuntimeContext as Record<string, unknown>).registrationId = 'a/../b';
    const answer = await ask(request);
    expect(answer.status).toBe(400);
    expect(answer.body).toMatchObject({ code: 'request_invalid', message: expect.stringContaining('deviceRuntimeContext.registrationId') });
  });
});

test('no answer or log line carries the token', async () => {
  const token = await deviceToken(alice, now);
  for (const registrationId of [alice.id, bob.id]) {
    const answer = await ask(allocationRequest({ registrationId, token }));
    const everything = JSON.stringify(answer);
    expect(everything).not.toContain(token.split('.')[2]);
    expect(everything).not.toContain(token.split('.')[1]);
  }
});

describe('one fleet-wide key (DEVICE_PUBLIC_KEY, as in the Python sample)', () => {
  test("binds each token to its registration, so a device cannot use another's token", async () => {
    const fleet = await makeDevice('fleet');
    const hook = await createWebhook(loadConfig({ DEVICE_PUBLIC_KEY: fleet.publicPem.replace(/\n/g, '\\n'), DPS_ID_SCOPE: ID_SCOPE }), { now: () => NOW });
    const tokenFor = (id: string) => signToken(fleet.privateKey, { registration_id: id, id_scope: ID_SCOPE, iat: now, exp: now + 600 });
    const own = await hook.handle({ body: JSON.stringify(allocationRequest({ registrationId: 'dev-1', token: await tokenFor('dev-1') })) });
    expect(own.status).toBe(200);
    expect(own.log.keySource).toBe('DEVICE_PUBLIC_KEY');
    const other = await hook.handle({ body: JSON.stringify(allocationRequest({ registrationId: 'dev-2', token: await tokenFor('dev-1') })) });
    expect(other.body).toMatchObject({ code: 'token_registration_mismatch' });
    expect(other.status).toBe(403);
  });
});
