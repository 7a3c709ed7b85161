/**
 * The Key Vault key store through the real SecretClient and a real DefaultAzureCredential, against local stand-ins:
 * the credential gets its token from the managed identity stand-in (IDENTITY_ENDPOINT / IDENTITY_HEADER), the client
 * talks HTTPS to the vault stand-in, trusted through NODE_EXTRA_CA_CERTS set by test/support/global-setup.ts.
 * Every outbound connection is checked: anything but loopback is refused and recorded.
 */
import { exportJWK, exportSPKI, generateKeyPair, jwtVerify, SignJWT, type CryptoKey, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebhookError, type ReasonCode } from '../../functions/core/reasons.js';
import { createKeyVaultStore } from '../../functions/keys/keyvault.js';
import type { KeyStore, StoredKeySet } from '../../functions/keys/types.js';
import { startKeyVaultStandin, type KeyVaultStandin } from '../support/keyvault-standin.js';
import { guardLoopback } from '../support/loopback-guard.js';
import { startManagedIdentityStandin, useManagedIdentityEnv, type ManagedIdentityStandin } from '../support/managed-identity-standin.js';

// Loopback only: any connection that would leave the machine (IMDS, login.microsoftonline.com) fails and is recorded.
let guard: ReturnType<typeof guardLoopback> | undefined;

const SLOW = 5_000;
const TIMEOUT_MS = 300;
const DEFAULT_TIMEOUT_MS = 2_000; // KEY_STORE_TIMEOUT_MS's default (functions/config.ts)

let mi: ManagedIdentityStandin;
let vault: KeyVaultStandin;
let restoreEnv: () => void;
let device: { privateKey: CryptoKey; spki: string; jwk: JWK };
let other: { privateKey: CryptoKey; jwk: JWK };

async function keyPair(): Promise<{ privateKey: CryptoKey; spki: string; jwk: JWK }> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  return { privateKey, spki: await exportSPKI(publicKey), jwk: await exportJWK(publicKey) };
}

/** A store as production makes it: no credential passed, so it builds its own DefaultAzureCredential. */
function newStore(timeoutMs = 10_000): KeyStore {
  return createKeyVaultStore({
    keyVault: { url: vault.url, disableChallengeResourceVerification: true },
    algorithms: ['ES256'],
    timeoutMs,
  });
}

async function signedBy(privateKey: CryptoKey, kid?: string): Promise<string> {
  return new SignJWT({ registration_id: 'sensor-1' })
    .setProtectedHeader({ alg: 'ES256', ...(kid !== undefined && { kid }) })
    .setIssuedAt()
    .setExpirationTime('5m')
    .sign(privateKey);
}

/** The read's rejection, asserted to be a WebhookError with `code`. */
async function refusal(read: Promise<StoredKeySet | undefined>, code: ReasonCode): Promise<WebhookError> {
  const error = await read.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(WebhookError);
  expect((error as WebhookError).code).toBe(code);
  return error as WebhookError;
}

/** Every error message a read produced, to check none leaks a secret or a token. */
const messages: string[] = [];
const NOT_A_KEY = 'hunter2-this-is-a-password-not-a-key-7f3a9c';

beforeAll(async () => {
  guard = guardLoopback();
  mi = await startManagedIdentityStandin();
  restoreEnv = useManagedIdentityEnv(mi);
  vault = await startKeyVaultStandin({ acceptsToken: mi.isIssuedToken });
  device = await keyPair();
  const second = await keyPair();
  other = { privateKey: second.privateKey, jwk: second.jwk };
});

afterAll(async () => {
  restoreEnv?.();
  guard?.restore();
  await vault?.stop();
  await mi?.stop();
});

describe('createKeyVaultStore, reading through the real SecretClient', () => {
  it('reaches the vault stand-in over verified TLS: its CA is trusted through global-setup, checks stay on', () => {
    expect(process.env.TEST_CA_CERT_FILE, 'add test/support/global-setup.ts to vitest globalSetup').toBeDefined();
    expect(process.env.NODE_TLS_REJECT_UNAUTHORIZED).not.toBe('0');
  });

  it('fails as key_store_unavailable, fast, when the managed identity endpoint fails', async () => {
    // First, while no store in this process has a token yet.
    mi.fail(500);
    try {
      vault.setSecret('device-no-token', device.spki);
      const tokenRequestsBefore = mi.tokenRequests;
      // The credential retries a failing endpoint; the deadline ends that. The default deadline (2 s), not the short
      // one of the other tests: on a busy machine 300 ms passed before the credential had even asked for a token.
      const started = Date.now();
      const error = await refusal(newStore(DEFAULT_TIMEOUT_MS).read('device-no-token'), 'key_store_unavailable');
      messages.push(error.message);
      expect(Date.now() - started).toBeLessThan(DEFAULT_TIMEOUT_MS + 1_500);
      expect(error.message).toContain('device-no-token');
      expect(vault.challenges).toBe(1); // the vault was reached and challenged...
      expect(mi.tokenRequests).toBeGreaterThan(tokenRequestsBefore); // ...the credential asked for a token...
      expect(vault.reads('device-no-token')).toBe(0); // ...and never got one to read with
    } finally {
      mi.fail(undefined);
    }
  });

  it('reads a PEM secret: the key verifies the device token; tags and name/version come back', async () => {
    const version = vault.setSecret('device-sensor-1', device.spki, { tags: { site: 'plant-7', line: '3' }, contentType: 'application/x-pem-file' });
    const found = await newStore().read('device-sensor-1');
    expect(found).toBeDefined();
    expect(found!.enabled).toBe(true);
    expect(found!.tags).toEqual({ site: 'plant-7', line: '3' });
    expect(found!.origin).toBe(`device-sensor-1/${version}`);
    expect(found!.keys).toHaveLength(1);
    const [key] = found!.keys;
    expect(key!.alg).toBe('ES256');
    await expect(jwtVerify(await signedBy(device.privateKey), key!.jwk)).resolves.toBeDefined();
    await expect(jwtVerify(await signedBy(other.privateKey), key!.jwk)).rejects.toThrow();
  });

  it('reads the newest version when a key is rotated', async () => {
    vault.setSecret('device-rotated', JSON.stringify(other.jwk));
    const version = vault.setSecret('device-rotated', device.spki);
    const found = await newStore().read('device-rotated');
    expect(found!.origin).toBe(`device-rotated/${version}`);
    await expect(jwtVerify(await signedBy(device.privateKey), found!.keys[0]!.jwk)).resolves.toBeDefined();
  });

  it('reads a JWK secret and keeps its kid', async () => {
    vault.setSecret('device-jwk', JSON.stringify({ ...device.jwk, kid: 'factory-2024', use: 'sig' }));
    const found = await newStore().read('device-jwk');
    expect(found!.keys.map((k) => k.kid)).toEqual(['factory-2024']);
    expect(found!.tags).toEqual({});
    await expect(jwtVerify(await signedBy(device.privateKey, 'factory-2024'), found!.keys[0]!.jwk)).resolves.toBeDefined();
  });

  it('reads a JWKS secret with two kids, each key verifying its own device token', async () => {
    vault.setSecret('device-jwks', JSON.stringify({ keys: [{ ...device.jwk, kid: 'old' }, { ...other.jwk, kid: 'new' }] }));
    const found = await newStore().read('device-jwks');
    expect(found!.keys.map((k) => k.kid)).toEqual(['old', 'new']);
    const byKid = new Map(found!.keys.map((k) => [k.kid, k.jwk]));
    await expect(jwtVerify(await signedBy(device.privateKey, 'old'), byKid.get('old')!)).resolves.toBeDefined();
    await expect(jwtVerify(await signedBy(other.privateKey, 'new'), byKid.get('new')!)).resolves.toBeDefined();
    await expect(jwtVerify(await signedBy(other.privateKey, 'new'), byKid.get('old')!)).rejects.toThrow();
  });

  it('answers undefined for a secret that does not exist (404 SecretNotFound)', async () => {
    const store = newStore();
    await expect(store.read('device-never-enrolled')).resolves.toBeUndefined();
    expect(vault.reads('device-never-enrolled')).toBe(1);
  });

  it('answers undefined, without asking the vault, for a name no vault secret can have', async () => {
    const before = vault.reads();
    await expect(newStore().read('device_with_underscore')).resolves.toBeUndefined();
    expect(vault.reads()).toBe(before);
  });

  it('reports a disabled secret (vault: 403 SecretDisabled) as a disabled key set, not a fault', async () => {
    vault.setSecret('device-revoked', device.spki, { enabled: false, tags: { reason: 'stolen' } });
    await expect(newStore().read('device-revoked')).resolves.toEqual({ keys: [], enabled: false, tags: {}, origin: 'device-revoked' });
  });

  it('maps 403 (the identity has no role on the vault) to key_store_access_denied', async () => {
    vault.setSecret('device-no-role', device.spki);
    vault.setFault({ kind: 'status', status: 403 }, 'device-no-role');
    const error = await refusal(newStore().read('device-no-role'), 'key_store_access_denied');
    messages.push(error.message);
    expect(error.message).toMatch(/device-no-role.*403/);
  });

  it.each([
    [429, 1],
    [500, undefined],
    [503, undefined],
  ] as const)('maps HTTP %i to key_store_unavailable after ONE request (no SDK retries)', async (status, retryAfterSeconds) => {
    const name = `device-fault-${status}`;
    vault.setSecret(name, device.spki);
    vault.setFault({ kind: 'status', status, ...(retryAfterSeconds !== undefined && { retryAfterSeconds }) }, name);
    const error = await refusal(newStore().read(name), 'key_store_unavailable');
    messages.push(error.message);
    expect(error.message).toContain(String(status));
    expect(vault.reads(name)).toBe(1);
  });

  it('gives up on a slow vault at the deadline, well before the vault would answer', async () => {
    vault.setSecret('device-slow', device.spki);
    const store = newStore(TIMEOUT_MS);
    await store.read('device-slow'); // token and challenge done, so only the GET is timed below
    vault.setFault({ kind: 'delay', ms: SLOW }, 'device-slow');
    const started = Date.now();
    const error = await refusal(store.read('device-slow'), 'key_store_unavailable');
    const elapsed = Date.now() - started;
    messages.push(error.message);
    expect(elapsed).toBeGreaterThanOrEqual(TIMEOUT_MS - 50);
    expect(elapsed).toBeLessThan(TIMEOUT_MS + 1_000);
    expect(error.message).toMatch(/timed out/);
  });

  it('gives up on a vault that never answers, including on the first read (challenge + token inside the deadline)', async () => {
    vault.setSecret('device-hang', device.spki);
    vault.setFault({ kind: 'hang' }, 'device-hang');
    const started = Date.now();
    await refusal(newStore(TIMEOUT_MS).read('device-hang'), 'key_store_unavailable');
    expect(Date.now() - started).toBeLessThan(TIMEOUT_MS + 1_000);
    expect(vault.reads('device-hang')).toBe(1);
  });

  it("stops when the caller's signal aborts, before the deadline", async () => {
    vault.setSecret('device-caller-abort', device.spki);
    vault.setFault({ kind: 'delay', ms: SLOW }, 'device-caller-abort');
    const store = newStore(10_000);
    const started = Date.now();
    const error = await refusal(store.read('device-caller-abort', AbortSignal.timeout(200)), 'key_store_unavailable');
    messages.push(error.message);
    expect(Date.now() - started).toBeLessThan(1_500);
    expect(vault.reads('device-caller-abort')).toBe(1);
  });

  it('maps a dropped connection to key_store_unavailable', async () => {
    vault.setSecret('device-reset', device.spki);
    const store = newStore();
    await store.read('device-reset');
    vault.setFault({ kind: 'reset' }, 'device-reset');
    const error = await refusal(store.read('device-reset'), 'key_store_unavailable');
    messages.push(error.message);
    expect(vault.reads('device-reset')).toBe(2);
    expect(error.message).toMatch(/ECONNRESET|socket hang up|failed/);
  });

  it('runs concurrent reads in parallel (the stand-in counts the peak the benchmark relies on)', async () => {
    const names = [0, 1, 2, 3, 4, 5].map((i) => `device-parallel-${i}`);
    for (const name of names) vault.setSecret(name, device.spki);
    const store = newStore();
    await store.read(names[0]!);
    vault.resetCounters();
    vault.setFault({ kind: 'delay', ms: 300 });
    try {
      const started = Date.now();
      const results = await Promise.all(names.map((name) => store.read(name)));
      expect(results.every((r) => r?.enabled === true)).toBe(true);
      expect(vault.peakConcurrentReads).toBe(names.length);
      expect(vault.concurrentReads).toBe(0);
      expect(vault.reads()).toBe(names.length);
      expect(Date.now() - started).toBeLessThan(300 * names.length);
    } finally {
      vault.setFault(undefined);
    }
  });

  it('refuses a secret that is not a key as device_key_unusable, without quoting it', async () => {
    vault.setSecret('device-password', NOT_A_KEY);
    const error = await refusal(newStore().read('device-password'), 'device_key_unusable');
    messages.push(error.message);
    expect(error.message).toContain('device-password');
  });

  it('refuses a secret holding a private JWK as device_key_unusable', async () => {
    const privateJwk = await exportJWK(device.privateKey);
    vault.setSecret('device-private', JSON.stringify(privateJwk));
    const error = await refusal(newStore().read('device-private'), 'device_key_unusable');
    messages.push(error.message);
    expect(error.message).not.toContain(String(privateJwk.d));
  });

  it('fetches one token for many reads of one store, sequential and concurrent', async () => {
    for (let i = 0; i < 5; i++) vault.setSecret(`device-many-${i}`, device.spki);
    const before = mi.tokenRequests;
    const challengesBefore = vault.challenges;
    const store = newStore();
    await store.read('device-many-0');
    for (let i = 1; i < 5; i++) await store.read(`device-many-${i}`);
    const results = await Promise.all([0, 1, 2, 3, 4, 0, 1].map((i) => store.read(`device-many-${i}`)));
    expect(results.every((r) => r?.keys.length === 1)).toBe(true);
    expect(mi.tokenRequests - before).toBe(1);
    expect(vault.challenges - challengesBefore).toBe(1);
    expect(mi.resources.at(-1)).toBe('https://vault.azure.net');
  });

  it('turns a token the vault rejects (401) into key_store_access_denied', async () => {
    vault.setSecret('device-token-revoked', device.spki);
    const store = newStore();
    await store.read('device-token-revoked');
    mi.reset(); // the vault stand-in now rejects every token issued so far; the store's cached one included
    const error = await refusal(store.read('device-token-revoked'), 'key_store_access_denied');
    messages.push(error.message);
    expect(error.message).toMatch(/401/);
  });

  it('never puts a secret value, key material or a token into an error message', () => {
    expect(messages.length).toBeGreaterThanOrEqual(10);
    for (const message of messages) {
      expect(message).not.toContain(NOT_A_KEY);
      expect(message).not.toContain('BEGIN');
      expect(message).not.toMatch(/mi-standin\.|Bearer|eyJ/);
    }
  });

  it('never tried to connect anywhere but loopback (no IMDS probe, no login.microsoftonline.com)', () => {
    expect(guard?.blocked).toEqual([]);
  });
});
