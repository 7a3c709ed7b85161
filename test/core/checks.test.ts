/**
 * The decision's named checks (functions/core/checks.ts): an observer sees them in CHECKS order, the failing one
 * carries the code the webhook answers, and observing changes nothing about the answer.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createWebhook, type Webhook } from '../../functions/app/compose.js';
import { loadConfig } from '../../functions/config.js';
import { CHECKS, observeChecks, type CheckEvent, type CheckName } from '../../functions/core/checks.js';
import { allocationRequest, deviceClaims, deviceToken, ID_SCOPE, keysDir, makeDevice, publicJwk, signToken, type TestDevice } from '../support/devices.js';

const NOW = Date.parse('2026-11-21T12:00:00Z');
const now = Math.floor(NOW / 1000);

let alice: TestDevice;
let bob: TestDevice;
let disabled: TestDevice;
let keyed: TestDevice;
let webhook: Webhook;
let replaying: Webhook;

beforeAll(async () => {
  [alice, bob, disabled, keyed] = await Promise.all([makeDevice('sensor-0042'), makeDevice('sensor-0043'), makeDevice('sensor-off'), makeDevice('sensor-kid')]);
  const dir = await keysDir([alice, bob, disabled]);
  await writeFile(join(dir, `${disabled.id}.meta`), JSON.stringify({ enabled: false }), { mode: 0o644 });
  await writeFile(join(dir, `${keyed.id}.jwk`), JSON.stringify({ keys: [await publicJwk(keyed, { kid: 'k1' })] }), { mode: 0o644 });
  webhook = await createWebhook(loadConfig({ DEVICE_KEYS_DIR: dir, DPS_ID_SCOPE: ID_SCOPE }), { now: () => NOW });
  replaying = await createWebhook(loadConfig({ DEVICE_KEYS_DIR: dir, DPS_ID_SCOPE: ID_SCOPE, REPLAY_STORE: 'memory' }), { now: () => NOW });
});
afterAll(async () => {
  await webhook.close();
  await replaying.close();
});

async function observed(hook: Webhook, request: unknown) {
  const events: CheckEvent[] = [];
  const answer = await hook.handle({ body: JSON.stringify(request), onCheck: (e) => events.push(e) });
  return { answer, events };
}

/** Every event in CHECKS order, each check at most once, and only the last one may fail. */
function expectOrdered(events: readonly CheckEvent[]): void {
  const positions = events.map((e) => CHECKS.indexOf(e.check));
  expect(positions).toEqual([...positions].sort((a, b) => a - b));
  expect(new Set(positions).size).toBe(positions.length);
  expect(events.slice(0, -1).every((e) => e.outcome !== 'fail')).toBe(true);
}

describe('an admitted device', () => {
  test('passes every check in order; replay is skipped when REPLAY_STORE is off', async () => {
    const { answer, events } = await observed(webhook, allocationRequest({ registrationId: alice.id, token: await deviceToken(alice, now) }));
    expect(answer.status).toBe(200);
    expectOrdered(events);
    expect(events.map((e) => e.check)).toEqual([...CHECKS]);
    expect(events.find((e) => e.check === 'replay')).toMatchObject({ outcome: 'skip', detail: 'REPLAY_STORE is off' });
    expect(events.find((e) => e.check === 'key-found')).toMatchObject({ outcome: 'pass', detail: `${alice.id}.pem` });
    expect(events.find((e) => e.check === 'hub')).toMatchObject({ outcome: 'pass', detail: 'rendezvous' });
  });

  test('with replay protection on, the replay check passes once and fails the second time', async () => {
    const token = await deviceToken(alice, now);
    const first = await observed(replaying, allocationRequest({ registrationId: alice.id, token }));
    expect(first.events.find((e) => e.check === 'replay')?.outcome).toBe('pass');
    const again = await observed(replaying, allocationRequest({ registrationId: alice.id, token }));
    expect(again.answer.body).toMatchObject({ code: 'token_replayed' });
    expect(again.events.at(-1)).toMatchObject({ check: 'replay', outcome: 'fail', code: 'token_replayed' });
  });

  test('the answer is the same with and without an observer', async () => {
    const request = JSON.stringify(allocationRequest({ registrationId: alice.id, token: await deviceToken(alice, now, { jti: 'fixed' }) }));
    const plain = await webhook.handle({ body: request });
    const watched = await webhook.handle({ body: request, onCheck: () => {} });
    expect({ ...watched, log: { ...watched.log, durationMs: 0 } }).toEqual({ ...plain, log: { ...plain.log, durationMs: 0 } });
  });
});

describe('each refusal fails at its own check, with the code the webhook answers', () => {
  const cases: Array<[string, () => Promise<unknown>, CheckName, string, Webhook?]> = [
    ['a request without linked hubs', async () => ({ ...allocationRequest({ registrationId: alice.id, token: 'x' }), linkedHubs: [] }), 'request', 'request_invalid'],
    ['no token', async () => allocationRequest({ registrationId: alice.id }), 'token-form', 'token_missing'],
    ['an HS256 token', async () => allocationRequest({ registrationId: alice.id, token: 'eyJhbGciOiJIUzI1NiJ9.e30.c2ln' }), 'token-form', 'token_algorithm_not_allowed'],
    ['no key on file', async () => allocationRequest({ registrationId: 'nobody', token: await deviceToken(alice, now, { sub: 'nobody', registration_id: 'nobody' }) }), 'key-found', 'device_key_not_found'],
    ['a disabled key', async () => allocationRequest({ registrationId: disabled.id, token: await deviceToken(disabled, now) }), 'key-enabled', 'device_key_disabled'],
    ['an unknown kid', async () => allocationRequest({ registrationId: keyed.id, token: await deviceToken(keyed, now, {}, { kid: 'k9' }) }), 'key-id', 'token_key_unknown'],
    ['another key', async () => allocationRequest({ registrationId: alice.id, token: await signToken(bob.privateKey, deviceClaims(alice, now)) }), 'signature', 'token_signature_invalid'],
    ['an expired token', async () => allocationRequest({ registrationId: alice.id, token: await deviceToken(alice, now - 1000) }), 'token-times', 'token_expired'],
    ['no exp', async () => allocationRequest({ registrationId: alice.id, token: await deviceToken(alice, now, { exp: undefined }) }), 'token-times', 'token_claim_missing'],
    ['iat ahead of the clock', async () => allocationRequest({ registrationId: alice.id, token: await deviceToken(alice, now, { iat: now + 600, exp: now + 900 }) }), 'token-times', 'token_issued_in_future'],
    ['another registration', async () => allocationRequest({ registrationId: alice.id, token: await deviceToken(alice, now, { sub: bob.id }) }), 'registration', 'token_registration_mismatch'],
    ['another DPS', async () => allocationRequest({ registrationId: alice.id, token: await deviceToken(alice, now, { aud: '0ne00OTHER', id_scope: '0ne00OTHER' }) }), 'audience', 'token_audience_mismatch'],
    ['an empty jti', async () => allocationRequest({ registrationId: alice.id, token: await deviceToken(alice, now, { jti: '' }) }), 'jti', 'token_claim_invalid'],
  ];
  test.each(cases)('%s', async (_name, request, check, code, hook) => {
    const { answer, events } = await observed(hook ?? webhook, await request());
    expect(answer.body).toMatchObject({ code });
    expectOrdered(events);
    expect(events.at(-1)).toMatchObject({ check, outcome: 'fail', code });
  });

  test('with replay protection on, a token without jti fails the jti check', async () => {
    const { events } = await observed(replaying, allocationRequest({ registrationId: alice.id, token: await deviceToken(alice, now, { jti: undefined }) }));
    expect(events.at(-1)).toMatchObject({ check: 'jti', outcome: 'fail', code: 'token_jti_missing' });
  });
});

test('a check is reported once, and a failure is the first check not yet passed', () => {
  const seen: CheckEvent[] = [];
  const progress = observeChecks((e) => seen.push(e));
  progress.pass('request');
  progress.pass('request');
  progress.pass('token-form');
  progress.fail('device_key_not_found', 'none');
  expect(seen.map((e) => `${e.check}:${e.outcome}`)).toEqual(['request:pass', 'token-form:pass', 'key-found:fail']);
});
