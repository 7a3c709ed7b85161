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
    [{ DEVICE_KEYS_DIR: 'x', REPLAY_STORE: 'table' }, 'REPLAY_TABLE_ACCOUNT_URL', 'needs REPLAY_TABLE_ACCOUNT_URL'],
    [{ DEVICE_KEYS_DIR: 'x', REPLAY_STORE: 'memory', REPLAY_MAX_LIVE_TOKENS_PER_DEVICE: '0' }, 'REPLAY_MAX_LIVE_TOKENS_PER_DEVICE', 'between 1 and 1000'],
    [{ DEVICE_KEYS_DIR: 'x', REPLAY_STORE: 'memory', REPLAY_MEMORY_MAX_MB: 'lots' }, 'REPLAY_MEMORY_MAX_MB', 'whole number'],
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

  test('replay settings: the memory bounds and the per-registration budget', () => {
    expect(loadConfig({ ...base, REPLAY_STORE: 'memory' }).replay).toEqual({
      kind: 'memory', maxEntries: 1_000_000, maxBytes: 256 * 1024 * 1024, maxLiveTokensPerDevice: 8,
    });
    expect(loadConfig({ ...base, REPLAY_STORE: 'memory', REPLAY_MEMORY_MAX_MB: '16', REPLAY_MAX_LIVE_TOKENS_PER_DEVICE: '3' }).replay)
      .toMatchObject({ maxBytes: 16 * 1024 * 1024, maxLiveTokensPerDevice: 3 });
  });

  describe('the replay table', () => {
    const table = (env: Record<string, string>) => loadConfig({ ...base, REPLAY_STORE: 'table', ...env }).replay;
    const KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

    test('by managed identity from the account URL (trailing slash dropped); Azurite names its account in the path', () => {
      expect(table({ REPLAY_TABLE_ACCOUNT_URL: 'https://acct1.table.core.windows.net/' })).toEqual({
        kind: 'table', access: { kind: 'identity', accountUrl: 'https://acct1.table.core.windows.net' }, tableName: 'usedtokens', maxLiveTokensPerDevice: 8,
      });
      expect(table({ REPLAY_TABLE_ACCOUNT_URL: 'https://127.0.0.1:10002/devstoreaccount1' })).toMatchObject({
        access: { kind: 'identity', accountUrl: 'https://127.0.0.1:10002/devstoreaccount1' },
      });
      // The account URL wins over the host's own AzureWebJobsStorage.
      expect(table({ REPLAY_TABLE_ACCOUNT_URL: 'https://acct1.table.core.windows.net', AzureWebJobsStorage: 'UseDevelopmentStorage=true' }))
        .toMatchObject({ access: { kind: 'identity' } });
    });

    test('by connection string: an account key on https, Azurite on loopback http, the development shortcut, AzureWebJobsStorage as the fallback', () => {
      const remote = `DefaultEndpointsProtocol=https;AccountName=acct1;AccountKey=${KEY};EndpointSuffix=core.windows.net`;
      expect(table({ REPLAY_TABLE_CONNECTION: remote })).toMatchObject({
        access: { kind: 'connection-string', setting: 'REPLAY_TABLE_CONNECTION', connectionString: remote, allowInsecureConnection: false },
      });
      const azurite = `DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=${KEY};TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;`;
      expect(table({ REPLAY_TABLE_CONNECTION: azurite })).toMatchObject({ access: { allowInsecureConnection: true } });
      expect(table({ AzureWebJobsStorage: 'UseDevelopmentStorage=true' })).toMatchObject({
        access: { kind: 'connection-string', setting: 'AzureWebJobsStorage', allowInsecureConnection: true },
      });
    });

    test.each([
      [{ REPLAY_TABLE_ACCOUNT_URL: 'https://acct1.table.core.windows.net', REPLAY_TABLE_CONNECTION: 'UseDevelopmentStorage=true' }, 'REPLAY_TABLE_ACCOUNT_URL', 'choose one'],
      [{ REPLAY_TABLE_ACCOUNT_URL: 'acct1' }, 'REPLAY_TABLE_ACCOUNT_URL', 'not a URL'],
      [{ REPLAY_TABLE_ACCOUNT_URL: 'http://acct1.table.core.windows.net' }, 'REPLAY_TABLE_ACCOUNT_URL', 'https://'],
      [{ REPLAY_TABLE_ACCOUNT_URL: 'https://acct1.table.core.windows.net/?sv=2024&sig=abc' }, 'REPLAY_TABLE_ACCOUNT_URL', 'without credentials, query'],
      [{ REPLAY_TABLE_ACCOUNT_URL: 'https://acct1.blob.core.windows.net' }, 'REPLAY_TABLE_ACCOUNT_URL', 'another storage service'],
      [{ REPLAY_TABLE_ACCOUNT_URL: 'https://acct1.table.core.windows.net/usedtokens' }, 'REPLAY_TABLE_ACCOUNT_URL', 'no path'],
      [{ REPLAY_TABLE_ACCOUNT_URL: 'https://127.0.0.1:10002' }, 'REPLAY_TABLE_ACCOUNT_URL', 'name the account in the path'],
      [{ REPLAY_TABLE_CONNECTION: 'not a connection string' }, 'REPLAY_TABLE_CONNECTION', 'not a storage connection string'],
      [{ REPLAY_TABLE_CONNECTION: 'AccountName=acct1;EndpointSuffix=core.windows.net' }, 'REPLAY_TABLE_CONNECTION', 'neither AccountKey nor SharedAccessSignature'],
      [{ REPLAY_TABLE_CONNECTION: `AccountName=acct1;AccountKey=${KEY};EndpointSuffix=core.windows.net` }, 'REPLAY_TABLE_CONNECTION', 'DefaultEndpointsProtocol'],
      [{ REPLAY_TABLE_CONNECTION: 'DefaultEndpointsProtocol=https;AccountName=acct1;AccountKey=not base64!;EndpointSuffix=core.windows.net' }, 'REPLAY_TABLE_CONNECTION', 'AccountKey is not base64'],
      [{ REPLAY_TABLE_CONNECTION: `DefaultEndpointsProtocol=https;AccountName=acct1;AccountKey=${KEY}` }, 'REPLAY_TABLE_CONNECTION', 'TableEndpoint or EndpointSuffix'],
      [{ REPLAY_TABLE_CONNECTION: `DefaultEndpointsProtocol=http;AccountName=acct1;AccountKey=${KEY};EndpointSuffix=core.windows.net` }, 'REPLAY_TABLE_CONNECTION', 'plain http only to a loopback'],
      [{ REPLAY_TABLE_CONNECTION: `DefaultEndpointsProtocol=https;AccountName=acct1;AccountKey=${KEY};TableEndpoint=https://acct1.blob.core.windows.net` }, 'REPLAY_TABLE_CONNECTION', 'another storage service'],
      [{ REPLAY_TABLE_CONNECTION: 'SharedAccessSignature=sv=2024&sig=abc' }, 'REPLAY_TABLE_CONNECTION', 'needs TableEndpoint'],
      [{ AzureWebJobsStorage: 'AccountName=acct1' }, 'AzureWebJobsStorage', 'neither AccountKey'],
    ])('refuses %j naming %s, without quoting the value', (env, setting, message) => {
      let error: unknown;
      try {
        table(env);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).setting).toBe(setting);
      expect((error as ConfigError).message).toContain(message);
      expect((error as ConfigError).message).not.toMatch(/AccountKey=|sig=|Eby8vdM/);
    });
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
