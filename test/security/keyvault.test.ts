/**
 * Key Vault faults (issue 6, part 4), through the whole webhook, the real SecretClient and a real
 * DefaultAzureCredential: the credential gets its token from the loopback managed identity stand-in
 * (IDENTITY_ENDPOINT / IDENTITY_HEADER, set for the whole file, never unset while a credential lives), the client
 * talks verified HTTPS to the vault stand-in (its CA trusted through test/support/global-setup.ts). A fault of the
 * vault is ours, not the device's: 503 with retry-after so DPS retries; a missing, disabled or unusable key refuses
 * the device (403); a key cached before the outage keeps the fleet registering.
 */
import { exportJWK, exportPKCS8, exportSPKI, generateKeyPair, type CryptoKey } from 'jose';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createWebhook, type Webhook } from '../../functions/app/compose.js';
import { loadConfig, type Env } from '../../functions/config.js';
import type { ReasonCode } from '../../functions/core/reasons.js';
import type { WebhookAnswer } from '../../functions/core/webhook.js';
import { deviceSecretName, groupSecretName } from '../../functions/keys/names.js';
import { allocationRequest, deviceClaims, ID_SCOPE, signToken } from '../support/devices.js';
import { startKeyVaultStandin, type KeyVaultStandin } from '../support/keyvault-standin.js';
import { startManagedIdentityStandin, useManagedIdentityEnv, type ManagedIdentityStandin } from '../support/managed-identity-standin.js';
import { guardLoopback, LeakWatch } from '../support/security.js';

// The vault deadline of the tests about it (a hang, a slow vault, a storm). Every other test gets one far beyond its
// own run, so on a busy machine its first read (a token, the challenge, TLS, then the GET) is never cut short and
// turned into a 503 that has nothing to do with what it checks.
const DEADLINE_MS = 1_000;
const NO_DEADLINE_MS = 30_000;
const TTL_SECONDS = 60;
const STALE_SECONDS = 600;
const NOT_A_KEY = 'correct-horse-battery-staple-not-a-key-0a7c';

const watch = new LeakWatch();
let guard: ReturnType<typeof guardLoopback>;
let mi: ManagedIdentityStandin;
let vault: KeyVaultStandin;
let restoreEnv: () => void;
let privateKey: CryptoKey;
let publicPem: string;
let clock = Date.now();
const hooks: Webhook[] = [];

beforeAll(async () => {
  guard = guardLoopback();
  mi = await startManagedIdentityStandin();
  restoreEnv = useManagedIdentityEnv(mi);
  vault = await startKeyVaultStandin({ acceptsToken: mi.isIssuedToken });
  const pair = await generateKeyPair('ES256', { extractable: true });
  privateKey = pair.privateKey;
  publicPem = await exportSPKI(pair.publicKey);
  watch.pem('device public key', publicPem);
  watch.pem('device private key', await exportPKCS8(privateKey));
  watch.secret('a secret that is not a key', NOT_A_KEY);
  watch.forbid('a managed identity bearer token', /mi-standin\.|Bearer /);
});
afterAll(async () => {
  await Promise.all(hooks.map((h) => h.close()));
  await vault?.stop();
  await mi?.stop();
  restoreEnv?.();
  guard?.restore();
});

async function webhook(env: Env = {}): Promise<Webhook> {
  const hook = await createWebhook(
    loadConfig({
      KEY_VAULT_URL: vault.url,
      KEY_VAULT_DISABLE_CHALLENGE_RESOURCE_VERIFICATION: 'true',
      DPS_ID_SCOPE: ID_SCOPE,
      KEY_STORE_TIMEOUT_MS: String(NO_DEADLINE_MS),
      KEY_CACHE_TTL_SECONDS: String(TTL_SECONDS),
      KEY_CACHE_STALE_IF_ERROR_SECONDS: String(STALE_SECONDS),
      ...env,
    }),
    { now: () => clock },
  );
  hooks.push(hook);
  return hook;
}

/** A webhook whose vault reads give up at DEADLINE_MS. */
const webhookWithDeadline = (env: Env = {}): Promise<Webhook> => webhook({ KEY_STORE_TIMEOUT_MS: String(DEADLINE_MS), ...env });

/** A registration's request body, signed now (signing is kept out of the timed part). */
async function requestFor(registrationId: string, group?: string): Promise<string> {
  const token = await signToken(privateKey, deviceClaims({ id: registrationId } as never, Math.floor(clock / 1000)));
  watch.token('device token', token);
  return JSON.stringify(allocationRequest({ registrationId, token, ...(group !== undefined && { group }) }));
}

/** Hands a prepared body to the webhook; `ms` is how long the answer took. */
async function send(hook: Webhook, body: string): Promise<WebhookAnswer & { ms: number }> {
  const started = performance.now();
  const answer = await hook.handle({ body, contentType: 'application/json' });
  const ms = performance.now() - started;
  watch.saw('answer', { status: answer.status, headers: answer.headers, body: answer.body, log: answer.log });
  return { ...answer, ms };
}

async function register(hook: Webhook, registrationId: string, group?: string): Promise<WebhookAnswer & { ms: number }> {
  return send(hook, await requestFor(registrationId, group));
}

function expectAnswer(answer: WebhookAnswer, code: ReasonCode, status: number): void {
  expect(answer.body).toMatchObject({ code });
  expect(answer.status).toBe(status);
  if (status === 503) expect(answer.headers['retry-after']).toMatch(/^[1-9]\d*$/);
}

let serial = 0;
/** A fresh device whose key is in the vault (unless `store` is false), so no test sees another's cache. */
function enrol(store = true, options?: Parameters<KeyVaultStandin['setSecret']>[2]): string {
  const id = `kv-dev-${++serial}`;
  if (store) vault.setSecret(deviceSecretName(id), publicPem, options);
  return id;
}

test('baseline: a device whose key is in the vault is assigned', async () => {
  const hook = await webhook();
  const answer = await register(hook, enrol());
  expect(answer.status).toBe(200);
  expect(answer.log.keySource).toMatch(/^device-kv-dev-\d+\/[0-9a-f]+$/);
});

describe('faults of the vault are ours: 503 with retry-after, so DPS retries', () => {
  test.each([
    ['429 with Retry-After (throttled)', { kind: 'status', status: 429, retryAfterSeconds: 7 } as const, 'key_store_unavailable'],
    ['500', { kind: 'status', status: 500 } as const, 'key_store_unavailable'],
    ['502', { kind: 'status', status: 502 } as const, 'key_store_unavailable'],
    ['503', { kind: 'status', status: 503 } as const, 'key_store_unavailable'],
    ['a 404 that is not SecretNotFound (a wrong URL, a proxy)', { kind: 'status', status: 404 } as const, 'key_store_unavailable'],
    ['403 (the identity lacks its role on the vault)', { kind: 'status', status: 403 } as const, 'key_store_access_denied'],
    ['401 on a valid token', { kind: 'status', status: 401 } as const, 'key_store_access_denied'],
    ['a dropped connection', { kind: 'reset' } as const, 'key_store_unavailable'],
  ])('%s', async (_name, fault, code) => {
    const hook = await webhook();
    const id = enrol();
    vault.setFault(fault, deviceSecretName(id));
    expectAnswer(await register(hook, id), code as ReasonCode, 503);
    vault.setFault(undefined, deviceSecretName(id));
  });

  test('a vault that never answers: 503 within 2x the deadline', async () => {
    const hook = await webhookWithDeadline();
    const id = enrol();
    vault.setFault({ kind: 'hang' }, deviceSecretName(id));
    const answer = await register(hook, id);
    expectAnswer(answer, 'key_store_unavailable', 503);
    expect(answer.ms).toBeLessThan(2 * DEADLINE_MS);
    vault.setFault(undefined, deviceSecretName(id));
  });

  test('a slow vault: answered within the deadline either way (200 when it makes it, 503 when not)', async () => {
    const hook = await webhookWithDeadline();
    await register(hook, enrol()); // token and challenge done
    const quick = enrol();
    vault.setFault({ kind: 'delay', ms: DEADLINE_MS / 4 }, deviceSecretName(quick));
    const ok = await register(hook, quick);
    expect(ok.status).toBe(200);
    expect(ok.ms).toBeLessThan(DEADLINE_MS);
    const slow = enrol();
    vault.setFault({ kind: 'delay', ms: 10_000 }, deviceSecretName(slow));
    const late = await register(hook, slow);
    expectAnswer(late, 'key_store_unavailable', 503);
    expect(late.ms).toBeGreaterThanOrEqual(DEADLINE_MS - 50);
    expect(late.ms).toBeLessThan(2 * DEADLINE_MS);
  });

  test('the managed identity endpoint failing: 503, fast', async () => {
    mi.fail(503);
    try {
      const hook = await webhookWithDeadline(); // a new credential: it has no token yet and must ask
      const answer = await register(hook, enrol());
      expectAnswer(answer, 'key_store_unavailable', 503);
      expect(answer.ms).toBeLessThan(2 * DEADLINE_MS);
    } finally {
      mi.fail(undefined);
    }
  });
});

describe('what is in the vault decides about the device: 403, no retry', () => {
  test('no secret (404 SecretNotFound): device_key_not_found', async () => {
    expectAnswer(await register(await webhook(), enrol(false)), 'device_key_not_found', 403);
  });

  test('a disabled secret: device_key_disabled, without falling through to a group or fleet key', async () => {
    const id = enrol(true, { enabled: false });
    vault.setSecret(groupSecretName('line-9'), publicPem);
    vault.setSecret('fleet-key', publicPem);
    const hook = await webhook({ KEY_VAULT_FLEET_SECRET: 'fleet-key' });
    expectAnswer(await register(hook, id, 'line-9'), 'device_key_disabled', 403);
    expect((await register(hook, enrol(false), 'line-9')).status).toBe(200); // the group key itself works
  });

  test.each([
    ['a password', NOT_A_KEY],
    ['a private JWK', 'private-jwk'],
    ['a PEM private key', 'private-pem'],
    ['a P-384 key while only ES256 is allowed', 'p384'],
    ['a JWK with a point not on the curve', 'off-curve'],
    ['an empty JWKS', '{"keys":[]}'],
  ])('a secret that is not a usable key (%s): device_key_unusable', async (_name, kind) => {
    let value = kind;
    if (kind === 'private-jwk') value = JSON.stringify(await exportJWK(privateKey));
    if (kind === 'private-pem') value = await exportPKCS8(privateKey);
    if (kind === 'p384') value = await exportSPKI((await generateKeyPair('ES384')).publicKey);
    if (kind === 'off-curve') {
      const jwk = await exportJWK((await generateKeyPair('ES256', { extractable: true })).publicKey);
      value = JSON.stringify({ ...jwk, y: jwk.x });
    }
    if (value.length >= 12) watch.secret(`stored value (${kind})`, value);
    const id = `kv-unusable-${++serial}`;
    vault.setSecret(deviceSecretName(id), value);
    expectAnswer(await register(await webhook(), id), 'device_key_unusable', 403);
  });
});

describe('registration and group ids reach the vault only as legal secret names', () => {
  test.each([['Sensor.Upper:7'], ['a_b'], ['..-'], ['x'.repeat(128)], ['MiXeD-Case-9']])('id %s', async (id) => {
    const expected = deviceSecretName(id);
    expect(expected).toMatch(/^[0-9a-zA-Z-]{1,127}$/);
    vault.setSecret(expected, publicPem);
    const hook = await webhook();
    vault.resetCounters();
    expect((await register(hook, id)).status).toBe(200);
    expect(vault.reads(expected)).toBe(1);
    expect(vault.reads()).toBe(1);
  });

  test('a group id with dots and colons is hashed too', async () => {
    const group = 'Factory.Line:7';
    vault.setSecret(groupSecretName(group), publicPem);
    const hook = await webhook();
    vault.resetCounters();
    const id = enrol(false);
    expect((await register(hook, id, group)).status).toBe(200);
    expect(groupSecretName(group)).toMatch(/^grouphash-[0-9a-f]{64}$/);
    expect(vault.reads()).toBe(vault.reads(deviceSecretName(id)) + vault.reads(groupSecretName(group)));
  });
});

describe('stale-if-error: a cached key keeps the fleet registering through an outage', () => {
  test('past its TTL, with the vault failing, the cached key is served (200); past the stale window, 503', async () => {
    const hook = await webhookWithDeadline();
    const id = enrol();
    expect((await register(hook, id)).status).toBe(200);
    const start = clock;
    try {
      clock = start + (TTL_SECONDS + 10) * 1000;
      for (const fault of [{ kind: 'status', status: 503 } as const, { kind: 'status', status: 429, retryAfterSeconds: 3 } as const, { kind: 'hang' } as const]) {
        vault.setFault(fault, deviceSecretName(id));
        clock += 10_000; // past the failure back-off, so the vault is asked again each time
        const staleBefore = hook.keyCache.stats.staleServed;
        const answer = await register(hook, id);
        expect(answer.status).toBe(200);
        expect(answer.ms).toBeLessThan(2 * DEADLINE_MS);
        expect(hook.keyCache.stats.staleServed).toBe(staleBefore + 1);
      }
      clock = start + (TTL_SECONDS + STALE_SECONDS + 10) * 1000;
      vault.setFault({ kind: 'status', status: 503 }, deviceSecretName(id));
      expectAnswer(await register(hook, id), 'key_store_unavailable', 503);
      vault.setFault(undefined, deviceSecretName(id));
      expect((await register(hook, id)).status).toBe(200);
    } finally {
      clock = Date.now();
      vault.setFault(undefined, deviceSecretName(id));
    }
  });

  test('a device whose key was never cached is not admitted during the outage', async () => {
    const hook = await webhook();
    const id = enrol();
    vault.setFault({ kind: 'status', status: 503 }, deviceSecretName(id));
    expectAnswer(await register(hook, id), 'key_store_unavailable', 503);
    vault.setFault(undefined, deviceSecretName(id));
  });
});

describe('a registration storm while the vault hangs', () => {
  const MAX_READS = 4;
  const N = 300;

  test(`${N} concurrent registrations of distinct devices: all answered within 2x the deadline, at most ${MAX_READS} reads`, async () => {
    const hook = await webhookWithDeadline({ KEY_STORE_MAX_CONCURRENT_READS: String(MAX_READS) });
    expect((await register(hook, enrol())).status).toBe(200); // token and challenge done
    const ids = Array.from({ length: N }, () => enrol());
    const bodies = await Promise.all(ids.map((id) => requestFor(id)));
    vault.resetCounters();
    vault.setFault({ kind: 'hang' });
    const readsBefore = hook.keyCache.stats.reads;
    try {
      const started = performance.now();
      const answers = await Promise.all(bodies.map((body) => send(hook, body)));
      const elapsed = performance.now() - started;
      for (const answer of answers) expectAnswer(answer, 'key_store_unavailable', 503);
      expect(elapsed).toBeLessThan(2 * DEADLINE_MS);
      // Reads beyond the limit waited for a slot and gave up at their deadline: nothing queued without bound.
      // At most MAX_READS store calls, all at the vault at once and none after: a waiter gets a slot only within
      // the first half of its deadline, so nobody queues behind a hung read, and none starts a doomed one.
      expect(hook.keyCache.stats.reads - readsBefore).toBeLessThanOrEqual(MAX_READS);
      expect(vault.peakConcurrentReads).toBeLessThanOrEqual(MAX_READS);
      expect(vault.reads()).toBeLessThanOrEqual(MAX_READS);
    } finally {
      vault.clearFaults();
    }
    // The vault is back: nothing is left queued or holding a slot, the same devices register at once. MAX_READS at a
    // time, so none waits for a slot: a read left holding one would make a waiter miss its deadline (503), and a
    // 200 is a read that got its slot and answered within its deadline. (Twenty at once would queue 16 behind four
    // reads whose speed is the machine's, and on a busy one miss the deadline for that reason alone.)
    const after: number[] = [];
    for (let at = 0; at < 20; at += MAX_READS) {
      const batch = await Promise.all(ids.slice(at, at + MAX_READS).map((id) => register(hook, id)));
      after.push(...batch.map((a) => a.status));
    }
    expect(after).toEqual(after.map(() => 200));
  });

  test(`${N} concurrent registrations of one device: one read (single flight)`, async () => {
    const hook = await webhook({ KEY_STORE_MAX_CONCURRENT_READS: String(MAX_READS) });
    expect((await register(hook, enrol())).status).toBe(200);
    const id = enrol();
    vault.setFault({ kind: 'delay', ms: DEADLINE_MS / 4 }, deviceSecretName(id));
    vault.resetCounters();
    const answers = await Promise.all(Array.from({ length: N }, () => register(hook, id)));
    expect(answers.every((a) => a.status === 200)).toBe(true);
    expect(vault.reads(deviceSecretName(id))).toBe(1);
    vault.setFault(undefined, deviceSecretName(id));
  });
});

test('never a connection off loopback (no IMDS probe, no login.microsoftonline.com)', () => {
  expect(guard.blocked).toEqual([]);
});

test('no answer or log line carries a token, key material, a stored secret value or a bearer token', () => {
  expect(watch.count).toBeGreaterThan(300);
  expect(watch.leaks()).toEqual([]);
});
