/**
 * The portal over Key Vault through the real SecretClient and DefaultAzureCredential (managed identity stand-in),
 * against the vault stand-in: listing disabled keys (paged), activation (enable + tags by PATCH on the version),
 * the version check that refuses a stale decision, and what the stand-in refuses as the vault does.
 */
import { DefaultAzureCredential } from '@azure/identity';
import { SecretClient } from '@azure/keyvault-secrets';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKeyVaultStore } from '../../functions/keys/keyvault.js';
import { createKeyVaultDeviceStore } from '../../portal/stores/keyvault.js';
import type { DeviceKeyStore } from '../../portal/core/ports.js';
import { startKeyVaultStandin, type KeyVaultStandin } from '../support/keyvault-standin.js';
import { guardLoopback } from '../support/loopback-guard.js';
import { startManagedIdentityStandin, useManagedIdentityEnv, type ManagedIdentityStandin } from '../support/managed-identity-standin.js';
import { ANNA, openForm, portalOver, post } from './helpers.js';
import { exportSPKI, generateKeyPair } from 'jose';

let guard: ReturnType<typeof guardLoopback> | undefined;
let mi: ManagedIdentityStandin;
let vault: KeyVaultStandin;
let restoreEnv: () => void;
let store: DeviceKeyStore;
let client: SecretClient;
let spki: string;
const DIGEST = 'ab'.repeat(32);

beforeAll(async () => {
  guard = guardLoopback();
  mi = await startManagedIdentityStandin();
  restoreEnv = useManagedIdentityEnv(mi);
  vault = await startKeyVaultStandin({ acceptsToken: mi.isIssuedToken });
  const credential = new DefaultAzureCredential();
  store = createKeyVaultDeviceStore({ url: vault.url, credential, disableChallengeResourceVerification: true });
  client = new SecretClient(vault.url, credential, { disableChallengeResourceVerification: true });
  spki = await exportSPKI((await generateKeyPair('ES256')).publicKey);
  const factory = { enabled: false, contentType: 'application/x-pem-file', tags: { 'public-key-sha256': DIGEST, 'file-encoding': 'utf-8' } };
  vault.setSecret('device-press-0001', spki, factory);
  vault.setSecret('device-press-0002', spki, { ...factory, enabled: true });
  for (let i = 0; i < 30; i += 1) vault.setSecret(`device-bulk-${String(i).padStart(3, '0')}`, spki, factory);
  vault.setSecret('group-line-7', spki, factory);
});

afterAll(async () => {
  restoreEnv?.();
  guard?.restore();
  await vault?.stop();
  await mi?.stop();
});

describe('Key Vault device store', () => {
  it('lists every disabled device key across pages (25 per page), and no enabled key or group key', async () => {
    const ids = (await store.listDisabled()).map((d) => d.id).sort();
    expect(ids).toHaveLength(31);
    expect(ids).toContain('press-0001');
    expect(ids).not.toContain('press-0002');
    expect(ids.some((id) => id.includes('line-7'))).toBe(false);
  });

  it('reads a disabled key\'s state without its value (a GET of the value would be 403 SecretDisabled)', async () => {
    const readsBefore = vault.reads('device-press-0001');
    const state = await store.get('press-0001');
    expect(state).toMatchObject({ id: 'press-0001', enabled: false, tags: { 'public-key-sha256': DIGEST } });
    expect(vault.reads('device-press-0001')).toBe(readsBefore);
    expect(await store.get('press-9999')).toBeUndefined();
  });

  it('activates through the portal: the secret is enabled, the form tags added, the digest tag kept; the webhook then reads it', async () => {
    const handler = portalOver(store);
    const { cookie, csrf, version } = await openForm(handler, '/devices/press-0001', ANNA);
    const answer = await handler(post('/devices/press-0001/activate', ANNA, { location: 'Hall 3', chassis: 'CH-000123', telemetryMode: 'standard', _csrf: csrf, _version: version }, { cookie }));
    expect(answer.status).toBe(303);
    expect(vault.metadataUpdates).toBe(1);
    const webhookStore = createKeyVaultStore({ keyVault: { url: vault.url, disableChallengeResourceVerification: true }, algorithms: ['ES256'], timeoutMs: 10_000 });
    const seen = await webhookStore.read('device-press-0001');
    expect(seen?.enabled).toBe(true);
    expect(seen?.tags).toEqual({ 'public-key-sha256': DIGEST, 'file-encoding': 'utf-8', location: 'Hall 3', chassis: 'CH-000123', 'desired.telemetryMode': 'standard' });
    expect(seen?.keys).toHaveLength(1);
  });

  it('refuses an update decided on a state another writer changed meanwhile (version + updated time), writing nothing', async () => {
    vault.setSecret('device-race-1', spki, { enabled: false, tags: { 'public-key-sha256': DIGEST } });
    const decided = (await store.get('race-1'))!;
    // Another portal instance activates first.
    const other = (await store.get('race-1'))!;
    expect(await store.update('race-1', other.version, { enabled: true, tags: { who: 'other' } })).toBe('updated');
    const before = vault.metadataUpdates;
    expect(await store.update('race-1', decided.version, { enabled: true, tags: { who: 'me' } })).toBe('conflict');
    expect(vault.metadataUpdates).toBe(before);
    expect((await store.get('race-1'))?.tags).toEqual({ who: 'other' });
  });

  it('refuses an update when a new version of the key was stored since the decision', async () => {
    vault.setSecret('device-race-2', spki, { enabled: false });
    const decided = (await store.get('race-2'))!;
    vault.setSecret('device-race-2', spki, { enabled: false, tags: { rotated: 'yes' } });
    expect(await store.update('race-2', decided.version, { enabled: true, tags: {} })).toBe('conflict');
    expect((await store.get('race-2'))?.enabled).toBe(false);
  });

  it('two concurrent activations of one device through one portal: one is written, the other told, none lost', async () => {
    vault.setSecret('device-race-3', spki, { enabled: false });
    const handler = portalOver(store);
    const a = await openForm(handler, '/devices/race-3', ANNA);
    const b = await openForm(handler, '/devices/race-3', ANNA);
    const form = (site: string, f: typeof a) => ({ location: site, chassis: 'CH-000001', telemetryMode: 'eco', _csrf: f.csrf, _version: f.version });
    const answers = await Promise.all([
      handler(post('/devices/race-3/activate', ANNA, form('Site A', a), { cookie: a.cookie })),
      handler(post('/devices/race-3/activate', ANNA, form('Site B', b), { cookie: b.cookie })),
    ]);
    expect(answers.map((r) => r.status).sort()).toEqual([303, 409]);
    const winner = answers[0]?.status === 303 ? 'Site A' : 'Site B';
    expect((await store.get('race-3'))?.tags.location).toBe(winner);
  });
});

describe('vault stand-in refuses what Key Vault refuses', () => {
  it('an update of a version that does not exist: 404 SecretNotFound', async () => {
    await expect(client.updateSecretProperties('device-press-0002', 'f'.repeat(32), { enabled: false })).rejects.toMatchObject({ statusCode: 404, code: 'SecretNotFound' });
  });

  it('more than 15 tags, or a tag value over 256 characters: 400 BadParameter', async () => {
    const version = vault.setSecret('device-tags', spki);
    const sixteen = Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`t${i}`, 'v']));
    await expect(client.updateSecretProperties('device-tags', version, { tags: sixteen })).rejects.toMatchObject({ statusCode: 400 });
    await expect(client.updateSecretProperties('device-tags', version, { tags: { a: 'x'.repeat(257) } })).rejects.toMatchObject({ statusCode: 400 });
  });

  it('maxresults above 25: 400 BadParameter', async () => {
    const pages = client.listPropertiesOfSecrets().byPage({ maxPageSize: 26 });
    await expect(pages.next()).rejects.toMatchObject({ statusCode: 400 });
  });

  it('nothing left loopback', () => {
    expect(guard?.blocked ?? []).toEqual([]);
  });
});
