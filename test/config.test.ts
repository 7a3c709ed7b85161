import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { ConfigError, loadConfig, loadLocalHostConfig } from '../functions/config.js';
import { ID_SCOPE, makeDevice } from './support/devices.js';

// A real, owner-only folder (mkdtemp makes it 0700): the folder is checked at start.
const dir = mkdtempSync(join(tmpdir(), 'config-keys-'));
const base = { DEVICE_KEYS_DIR: dir, DPS_ID_SCOPE: ID_SCOPE };

describe('loadConfig', () => {
  test('embedded defaults with a keys folder', () => {
    const config = loadConfig(base);
    expect(config.token).toEqual({ algorithms: ['ES256'], maxLifetimeSeconds: 3600, clockSkewSeconds: 60, idScope: ID_SCOPE, requireAudience: true, requireJti: false });
    expect(config.keySource).toEqual({ kind: 'local', dir });
    expect(config.replay).toEqual({ kind: 'off' });
    expect(config.keyCache).toMatchObject({ ttlMs: 300_000, staleIfErrorMs: 300_000, maxReadsPerSecond: 0 });
  });

  test('Key Vault with a fleet secret and the challenge escape hatch; reads rate-limited by default', () => {
    const config = loadConfig({ KEY_VAULT_URL: 'https://kv.vault.azure.net/', DPS_ID_SCOPE: ID_SCOPE, KEY_VAULT_FLEET_SECRET: 'fleet-key', KEY_VAULT_DISABLE_CHALLENGE_RESOURCE_VERIFICATION: 'true' });
    expect(config.keySource).toEqual({ kind: 'key-vault', keyVault: { url: 'https://kv.vault.azure.net', fleetSecretName: 'fleet-key', disableChallengeResourceVerification: true } });
    expect(config.keyCache.maxReadsPerSecond).toBe(100);
  });

  test('a PEM with escaped line breaks (as app settings flatten it) is restored', async () => {
    const { publicPem } = await makeDevice('fleet');
    const config = loadConfig({ DEVICE_PUBLIC_KEY: publicPem.trim().replace(/\n/g, '\\n'), DPS_ID_SCOPE: ID_SCOPE });
    expect(config.keySource).toEqual({ kind: 'local', fleetPublicKeyPem: publicPem.trim() });
  });

  test('DPS_ID_SCOPE_CHECK=off: the audience claims become optional, with or without DPS_ID_SCOPE', () => {
    expect(loadConfig({ DEVICE_KEYS_DIR: dir, DPS_ID_SCOPE_CHECK: 'off' }).token).toMatchObject({ requireAudience: false });
    expect(loadConfig({ DEVICE_KEYS_DIR: dir, DPS_ID_SCOPE_CHECK: 'OFF' }).token.idScope).toBeUndefined();
    expect(loadConfig({ ...base, DPS_ID_SCOPE_CHECK: 'off' }).token).toMatchObject({ idScope: ID_SCOPE, requireAudience: false });
  });

  test.each([
    [{ DPS_ID_SCOPE: ID_SCOPE }, 'DEVICE_KEYS_DIR', 'no key source'],
    [{ DEVICE_KEYS_DIR: 'x' }, 'DPS_ID_SCOPE', 'is required'],
    [{ DEVICE_KEYS_DIR: 'x', DPS_ID_SCOPE_CHECK: 'no' }, 'DPS_ID_SCOPE_CHECK', 'on or off'],
    [{ DEVICE_KEYS_DIR: 'x', DPS_ID_SCOPE: '0ne 0001' }, 'DPS_ID_SCOPE', 'id scope'],
    [{ KEY_VAULT_URL: 'https://kv.vault.azure.net', DEVICE_KEYS_DIR: 'x' }, 'KEY_VAULT_URL', 'choose one key source'],
    [{ KEY_VAULT_URL: 'http://kv.vault.azure.net' }, 'KEY_VAULT_URL', 'https://'],
    [{ DEVICE_KEYS_DIR: 'x', JWT_ALGORITHMS: 'ES256,HS256' }, 'JWT_ALGORITHMS', '"HS256" is not allowed'],
    [{ DEVICE_KEYS_DIR: 'x', JWT_ALGORITHMS: 'none' }, 'JWT_ALGORITHMS', '"none" is not allowed'],
    [{ DEVICE_KEYS_DIR: 'x', JWT_MAX_LIFETIME_SECONDS: '1h' }, 'JWT_MAX_LIFETIME_SECONDS', 'whole number'],
    [{ DEVICE_KEYS_DIR: 'x', JWT_CLOCK_SKEW_SECONDS: '9999' }, 'JWT_CLOCK_SKEW_SECONDS', 'between 0 and 600'],
    [{ DEVICE_KEYS_DIR: 'x', IOT_HUB_HOSTNAME: 'https://hub' }, 'IOT_HUB_HOSTNAME', 'host name'],
    [{ DEVICE_KEYS_DIR: 'x', INITIAL_TWIN_TEMPLATE: '{"tags":' }, 'INITIAL_TWIN_TEMPLATE', 'not valid JSON'],
    [{ DEVICE_KEYS_DIR: 'x', INITIAL_TWIN_TEMPLATE: '{"properties":{"reported":{}}}' }, 'INITIAL_TWIN_TEMPLATE', '"properties.reported" is not allowed'],
    [{ DEVICE_KEYS_DIR: 'x', REPLAY_STORE: 'redis' }, 'REPLAY_STORE', 'off, memory or table'],
    [{ DEVICE_KEYS_DIR: 'x', REPLAY_STORE: 'table' }, 'REPLAY_TABLE_CONNECTION', 'needs'],
    [{ KEY_VAULT_URL: 'https://kv.vault.azure.net', KEY_VAULT_DISABLE_CHALLENGE_RESOURCE_VERIFICATION: 'yes' }, 'KEY_VAULT_DISABLE_CHALLENGE_RESOURCE_VERIFICATION', 'true or false'],
    [{ KEY_VAULT_URL: 'https://kv.vault.azure.net', KEY_STORE_MAX_READS_PER_SECOND: '-1' }, 'KEY_STORE_MAX_READS_PER_SECOND', 'whole number'],
    [{ DEVICE_PUBLIC_KEY: 'MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE' }, 'DEVICE_PUBLIC_KEY', 'PEM public key'],
  ])('refuses %j naming %s', (env, setting, message) => {
    let error: unknown;
    try {
      // Every case but the first two sets the scope; a key folder named "x" is swapped for a real one.
      const withScope = 'DPS_ID_SCOPE' in env || setting === 'DPS_ID_SCOPE' ? env : { DPS_ID_SCOPE: ID_SCOPE, ...env };
      loadConfig('DEVICE_KEYS_DIR' in withScope && withScope.DEVICE_KEYS_DIR === 'x' ? { ...withScope, DEVICE_KEYS_DIR: dir } : withScope);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).setting).toBe(setting);
    expect((error as ConfigError).message).toContain(message);
  });

  test('replay protection makes jti required', () => {
    expect(loadConfig({ ...base, REPLAY_STORE: 'memory' }).token.requireJti).toBe(true);
  });

  test('local host: Core Tools port by default, PORT and the function key from settings', () => {
    expect(loadLocalHostConfig({})).toEqual({ port: 7071 });
    expect(loadLocalHostConfig({ PORT: '8080', WEBHOOK_FUNCTION_KEY: 'k' })).toEqual({ port: 8080, functionKey: 'k' });
    expect(loadLocalHostConfig({ WEBHOOK_FUNCTION_KEY: '' })).toEqual({ port: 7071 });
  });
});
