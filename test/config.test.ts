import { describe, expect, test } from 'vitest';
import { ConfigError, loadConfig, loadLocalHostConfig } from '../functions/config.js';

describe('loadConfig', () => {
  test('embedded defaults with a keys folder', () => {
    const config = loadConfig({ DEVICE_KEYS_DIR: 'device-keys' });
    expect(config.token).toEqual({ algorithms: ['ES256'], maxLifetimeSeconds: 3600, clockSkewSeconds: 60, requireJti: false });
    expect(config.keySource).toEqual({ kind: 'local', dir: 'device-keys' });
    expect(config.replay).toEqual({ kind: 'off' });
  });

  test('Key Vault with a fleet secret and the challenge escape hatch', () => {
    const config = loadConfig({ KEY_VAULT_URL: 'https://kv.vault.azure.net/', KEY_VAULT_FLEET_SECRET: 'fleet-key', KEY_VAULT_DISABLE_CHALLENGE_RESOURCE_VERIFICATION: 'true' });
    expect(config.keySource).toEqual({ kind: 'key-vault', keyVault: { url: 'https://kv.vault.azure.net', fleetSecretName: 'fleet-key', disableChallengeResourceVerification: true } });
  });

  test('a PEM with escaped line breaks (as app settings flatten it) is restored', () => {
    const config = loadConfig({ DEVICE_PUBLIC_KEY: '-----BEGIN PUBLIC KEY-----\\nMFkw\\n-----END PUBLIC KEY-----' });
    expect(config.keySource).toEqual({ kind: 'local', fleetPublicKeyPem: '-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----' });
  });

  test.each([
    [{}, 'DEVICE_KEYS_DIR', 'no key source'],
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
    [{ DEVICE_PUBLIC_KEY: 'MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE' }, 'DEVICE_PUBLIC_KEY', 'PEM public key'],
  ])('refuses %j naming %s', (env, setting, message) => {
    let error: unknown;
    try {
      loadConfig(env);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).setting).toBe(setting);
    expect((error as ConfigError).message).toContain(message);
  });

  test('replay protection makes jti required', () => {
    expect(loadConfig({ DEVICE_KEYS_DIR: 'x', REPLAY_STORE: 'memory' }).token.requireJti).toBe(true);
  });

  test('local host: Core Tools port by default, PORT and the function key from settings', () => {
    expect(loadLocalHostConfig({})).toEqual({ port: 7071 });
    expect(loadLocalHostConfig({ PORT: '8080', WEBHOOK_FUNCTION_KEY: 'k' })).toEqual({ port: 8080, functionKey: 'k' });
  });
});
