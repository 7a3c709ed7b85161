/**
 * Replay (issue 6, part 5; issue 13 items 1 and 2): a token is accepted once, for as long as any verifier would
 * accept it (exp + clock skew). In memory for one instance; in Azure Table Storage (here Azurite, started on a
 * loopback port by this file) for a scaled-out app, where two instances racing one token must admit it exactly once,
 * and a store that cannot answer makes the webhook refuse to decide (503), never admit. Each registration has a
 * budget of live jtis, so one device cannot fill the store and deny the fleet. Time is frozen (and moved) through
 * the webhook's clock; both stores judge a use live at the instant the token was verified.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { createWebhook, type Webhook } from '../../functions/app/compose.js';
import { loadConfig, type Env } from '../../functions/config.js';
import type { ReasonCode } from '../../functions/core/reasons.js';
import type { WebhookAnswer } from '../../functions/core/webhook.js';
import { allocationRequest, deviceToken, ID_SCOPE, keysDir, makeDevice, type TestDevice } from '../support/devices.js';
import { AZURITE_ACCOUNT_KEY, b64u, LeakWatch, segments, startAzuriteTable, type Azurite } from '../support/security.js';

const NOW = Date.parse('2026-11-21T12:00:00Z');
const now = Math.floor(NOW / 1000);
const SKEW_SECONDS = 60; // the default JWT_CLOCK_SKEW_SECONDS
let clock = NOW;
/** Budget large enough that the tests of other rules never meet it. */
const ROOMY = { REPLAY_MAX_LIVE_TOKENS_PER_DEVICE: '1000' };
// P-256 group order: (r, n - s) is a second valid ECDSA signature of the same message.
const P256_N = BigInt('0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551');

const watch = new LeakWatch();
let alice: TestDevice;
let bob: TestDevice;
let carol: TestDevice;
let dir: string;
const hooks: Webhook[] = [];

beforeAll(async () => {
  [alice, bob, carol] = await Promise.all([makeDevice('sensor-0042'), makeDevice('sensor-0043'), makeDevice('sensor-0044')]);
  dir = await keysDir([alice, bob, carol]);
  watch.pem('alice public key', alice.publicPem);
  watch.secret('Azurite account key', AZURITE_ACCOUNT_KEY);
});
afterAll(async () => {
  await Promise.all(hooks.map((h) => h.close()));
});

async function webhookWith(env: Env): Promise<Webhook> {
  const hook = await createWebhook(loadConfig({ DEVICE_KEYS_DIR: dir, DPS_ID_SCOPE: ID_SCOPE, ...env }), { now: () => clock });
  hooks.push(hook);
  return hook;
}

async function ask(hook: Webhook, token: string, registrationId = alice.id): Promise<WebhookAnswer> {
  watch.token('token', token);
  const answer = await hook.handle({ body: JSON.stringify(allocationRequest({ registrationId, token })), contentType: 'application/json' });
  watch.saw('answer', { status: answer.status, headers: answer.headers, body: answer.body, log: answer.log });
  return answer;
}

function expectCode(answer: WebhookAnswer, code: ReasonCode, status: number): void {
  expect(answer.body).toMatchObject({ code });
  expect(answer.status).toBe(status);
}

/** The same signed token with the unused low bits of the signature's last base64url character set. */
function nonCanonical(token: string): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const [h, p, s] = segments(token);
  const last = alphabet.indexOf(s.at(-1)!);
  return `${h}.${p}.${s.slice(0, -1)}${alphabet[last ^ 0b0101]}`;
}

/** The same signed token with s replaced by n - s (ECDSA signatures are malleable; WebCrypto accepts both). */
function malleated(token: string): string {
  const [h, p, s] = segments(token);
  const sig = Buffer.from(s, 'base64url');
  const sValue = BigInt(`0x${sig.subarray(32).toString('hex')}`);
  const flipped = Buffer.from((P256_N - sValue).toString(16).padStart(64, '0'), 'hex');
  return `${h}.${p}.${b64u(Buffer.concat([sig.subarray(0, 32), flipped]))}`;
}

/**
 * Issue 13 item 1: the verifier accepts a token until exp + skew, so the store must remember its jti that long. The
 * store before the fix forgot it at exp: the replays inside the skew below were admitted.
 */
function replayWindowTests(env: () => Env): void {
  test('a used jti is remembered until exp + clock skew: replays after exp, inside the skew, are refused', async () => {
    clock = NOW;
    const hook = await webhookWith(env());
    const token = await deviceToken(alice, now, { exp: now + 120 });
    expect((await ask(hook, token)).status).toBe(200);
    clock = (now + 120) * 1000 + 1; // just past exp: the verifier still accepts it
    expectCode(await ask(hook, token), 'token_replayed', 403);
    clock = (now + 120 + SKEW_SECONDS) * 1000 - 1; // the last millisecond the verifier accepts it
    expectCode(await ask(hook, token), 'token_replayed', 403);
    clock = (now + 120 + SKEW_SECONDS) * 1000; // from here on the verifier refuses it itself
    expectCode(await ask(hook, token), 'token_expired', 403);
  });

  test('a token first used after exp, inside the skew, is admitted once and then refused', async () => {
    clock = (now + 120) * 1000 + 10_000;
    const hook = await webhookWith(env());
    const token = await deviceToken(alice, now, { exp: now + 120 });
    expect((await ask(hook, token)).status).toBe(200);
    expectCode(await ask(hook, token), 'token_replayed', 403);
    clock = (now + 120 + SKEW_SECONDS) * 1000 - 1;
    expectCode(await ask(hook, token), 'token_replayed', 403);
  });
}

/**
 * Issue 13 item 2: a device that holds its own key can mint any number of jtis. Each registration may hold
 * REPLAY_MAX_LIVE_TOKENS_PER_DEVICE live ones; the next is refused with its own code (403: DPS does not retry), and
 * other devices are untouched. Before the fix the memory store took them all until full, then answered every
 * device 503.
 */
function budgetTests(env: () => Env): void {
  test('over its budget of live jtis a registration gets 403 token_replay_budget_exceeded; a replay is still token_replayed; other devices still register', async () => {
    clock = NOW;
    const hook = await webhookWith({ ...env(), REPLAY_MAX_LIVE_TOKENS_PER_DEVICE: '3' });
    const first = await deviceToken(alice, now, { exp: now + 120 });
    expect((await ask(hook, first)).status).toBe(200);
    for (let i = 0; i < 2; i++) expect((await ask(hook, await deviceToken(alice, now, { exp: now + 120 }))).status).toBe(200);
    const over = await ask(hook, await deviceToken(alice, now, { exp: now + 120 }));
    expectCode(over, 'token_replay_budget_exceeded', 403);
    expect(over.headers['retry-after']).toBeUndefined();
    expectCode(await ask(hook, first), 'token_replayed', 403);
    expect((await ask(hook, await deviceToken(bob, now), bob.id)).status).toBe(200);
    // Another letter case of the id is the same registration, with the same budget.
    expectCode(await ask(hook, await deviceToken(alice, now, { sub: alice.id.toUpperCase(), registration_id: alice.id.toUpperCase() }), alice.id.toUpperCase()), 'token_replay_budget_exceeded', 403);
    // Once its tokens are past exp + skew, the budget is free again.
    clock = (now + 120 + SKEW_SECONDS) * 1000;
    expect((await ask(hook, await deviceToken(alice, Math.floor(clock / 1000)))).status).toBe(200);
  });
}

describe('REPLAY_STORE=memory', () => {
  let hook: Webhook;
  beforeAll(async () => {
    hook = await webhookWith({ REPLAY_STORE: 'memory', ...ROOMY });
  });
  beforeEach(() => {
    clock = NOW;
  });

  test('a token is accepted once and refused as token_replayed after', async () => {
    const token = await deviceToken(alice, now);
    expect((await ask(hook, token)).status).toBe(200);
    expectCode(await ask(hook, token), 'token_replayed', 403);
    expectCode(await ask(hook, token), 'token_replayed', 403);
  });

  test('a token without jti is refused as token_jti_missing', async () => {
    expectCode(await ask(hook, await deviceToken(alice, now, { jti: undefined })), 'token_jti_missing', 403);
  });

  test('the same jti in a re-encoded or malleated signature, or under the id in another case, is still the same token', async () => {
    const token = await deviceToken(alice, now);
    const variants = [nonCanonical(token), malleated(token)];
    for (const variant of variants) expect(variant).not.toBe(token);
    // Each variant verifies on its own (so refusing it below is the replay check, not a broken signature)...
    for (const variant of variants) expect((await ask(await webhookWith({ REPLAY_STORE: 'memory', ...ROOMY }), variant)).status).toBe(200);
    // ...and after the original is used, none is admitted.
    expect((await ask(hook, token)).status).toBe(200);
    for (const variant of variants) expectCode(await ask(hook, variant), 'token_replayed', 403);
    expectCode(await ask(hook, token, alice.id.toUpperCase()), 'token_replayed', 403);
  });

  test('a refused use does not burn the jti: a token sent under another registration is still good for its own', async () => {
    const token = await deviceToken(alice, now);
    expectCode(await ask(hook, token, bob.id), 'token_signature_invalid', 403);
    expect((await ask(hook, token)).status).toBe(200);
  });

  test('the same jti of two devices are two tokens', async () => {
    expect((await ask(hook, await deviceToken(alice, now, { jti: 'shared-jti' }))).status).toBe(200);
    expect((await ask(hook, await deviceToken(bob, now, { jti: 'shared-jti' }), bob.id)).status).toBe(200);
  });

  test('a full store refuses to decide (503, DPS retries) rather than forget a live token', async () => {
    const small = await webhookWith({ REPLAY_STORE: 'memory', REPLAY_MEMORY_MAX_ENTRIES: '2', REPLAY_MAX_LIVE_TOKENS_PER_DEVICE: '1' });
    expect((await ask(small, await deviceToken(alice, now))).status).toBe(200);
    expect((await ask(small, await deviceToken(bob, now), bob.id)).status).toBe(200);
    const answer = await ask(small, await deviceToken(carol, now), carol.id);
    expectCode(answer, 'replay_store_unavailable', 503);
    expect(answer.headers['retry-after']).toMatch(/^\d+$/);
  });

  test('a jti is 1-256 characters: 256 is admitted, 257 is token_claim_invalid (the store\'s byte bound relies on it)', async () => {
    expect((await ask(hook, await deviceToken(alice, now, { jti: 'j'.repeat(256) }))).status).toBe(200);
    expectCode(await ask(hook, await deviceToken(alice, now, { jti: 'j'.repeat(257) })), 'token_claim_invalid', 403);
  });

  test('one device flooding fresh jtis cannot fill the store: it meets its budget, the others keep registering', async () => {
    const small = await webhookWith({ REPLAY_STORE: 'memory', REPLAY_MEMORY_MAX_ENTRIES: '20' });
    const answers = [];
    for (let i = 0; i < 40; i++) answers.push(await ask(small, await deviceToken(alice, now)));
    expect(answers.filter((a) => a.status === 200)).toHaveLength(8); // the default budget
    for (const a of answers.filter((x) => x.status !== 200)) expectCode(a, 'token_replay_budget_exceeded', 403);
    expect((await ask(small, await deviceToken(bob, now), bob.id)).status).toBe(200);
    expect((await ask(small, await deviceToken(carol, now), carol.id)).status).toBe(200);
  });

  replayWindowTests(() => ({ REPLAY_STORE: 'memory', ...ROOMY }));
  budgetTests(() => ({ REPLAY_STORE: 'memory' }));
});

describe('REPLAY_STORE=table, against Azurite', () => {
  let azurite: Azurite;
  let env: Env;
  beforeAll(async () => {
    azurite = await startAzuriteTable();
    env = { REPLAY_STORE: 'table', REPLAY_TABLE_CONNECTION: azurite.connectionString, REPLAY_TABLE_NAME: `used${Date.now()}`, ...ROOMY };
  });
  afterAll(() => azurite?.stop());
  beforeEach(() => {
    clock = NOW;
  });

  // Each test its own table, so one test's live uses never count against another's budget.
  let tables = 0;
  const fresh = (): Env => ({ ...env, REPLAY_TABLE_NAME: `used${Date.now()}n${(tables += 1)}` });
  replayWindowTests(fresh);
  budgetTests(() => {
    const { REPLAY_MAX_LIVE_TOKENS_PER_DEVICE: _roomy, ...rest } = fresh();
    return rest;
  });

  test('instances racing distinct tokens of one registration at its budget: never more admitted than the budget', async () => {
    const tight = { ...fresh(), REPLAY_MAX_LIVE_TOKENS_PER_DEVICE: '3' };
    const [a, b] = [await webhookWith(tight), await webhookWith(tight)];
    const tokens = await Promise.all(Array.from({ length: 8 }, () => deviceToken(alice, now)));
    const answers = await Promise.all(tokens.map((token, i) => ask(i % 2 === 0 ? a : b, token)));
    const admitted = answers.filter((x) => x.status === 200).length;
    expect(admitted).toBeGreaterThanOrEqual(1);
    expect(admitted).toBeLessThanOrEqual(3);
    // A lost race is retried a few rounds, then answered 503 (DPS retries); never a wrong 200.
    for (const x of answers.filter((y) => y.status !== 200)) expect(['token_replay_budget_exceeded', 'replay_store_unavailable']).toContain((x.body as { code: string }).code);
    // Settled: exactly the budget is live.
    const settled = [];
    for (let i = 0; i < 4; i++) settled.push(await ask(a, await deviceToken(alice, now)));
    expect(admitted + settled.filter((x) => x.status === 200).length).toBe(3);
  });

  test('a token is accepted once and refused as token_replayed after, also by a fresh instance', async () => {
    const hook = await webhookWith(env);
    const token = await deviceToken(alice, now);
    expect((await ask(hook, token)).status).toBe(200);
    expectCode(await ask(hook, token), 'token_replayed', 403);
    expectCode(await ask(await webhookWith(env), token), 'token_replayed', 403);
    expectCode(await ask(hook, await deviceToken(alice, now, { jti: undefined })), 'token_jti_missing', 403);
  });

  test('two instances sharing the table, racing the same token: exactly one 200', async () => {
    const [a, b] = [await webhookWith(env), await webhookWith(env)];
    for (let round = 0; round < 10; round++) {
      const token = await deviceToken(alice, now);
      const answers = await Promise.all([a, b, a, b, a, b].map((hook) => ask(hook, token)));
      expect(answers.filter((x) => x.status === 200)).toHaveLength(1);
      for (const x of answers.filter((y) => y.status !== 200)) expectCode(x, 'token_replayed', 403);
    }
  });

  test('Azurite stopped: 503 replay_store_unavailable with retry-after, never 200', async () => {
    const hook = await webhookWith(env);
    expect((await ask(hook, await deviceToken(alice, now))).status).toBe(200);
    await azurite.stop();
    const started = Date.now();
    const answer = await ask(hook, await deviceToken(alice, now));
    expectCode(answer, 'replay_store_unavailable', 503);
    expect(answer.headers['retry-after']).toMatch(/^\d+$/);
    expect(Date.now() - started).toBeLessThan(10_000);
    // A fresh instance, which must first create the table, fails closed too.
    expectCode(await ask(await webhookWith(env), await deviceToken(alice, now)), 'replay_store_unavailable', 503);
  });
});

test('no answer or log line carries a token or the storage account key', () => {
  expect(watch.count).toBeGreaterThan(40);
  expect(watch.leaks()).toEqual([]);
});
