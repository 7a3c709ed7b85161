/**
 * The one place that reads configuration. `loadConfig` takes the environment as a plain map (app settings in Azure,
 * local.settings.json locally) and returns a typed, validated config, or throws a `ConfigError` naming the setting.
 * Nothing else in the project reads `process.env` for the webhook's settings.
 */
import { isHostName, SUPPORTED_ALGORITHMS, type TokenPolicy, type TwinTemplate } from './core/policy.js';
import { twinEntryProblem } from './core/twin.js';

export class ConfigError extends TypeError {
  constructor(
    readonly setting: string,
    message: string,
  ) {
    super(`${setting}: ${message}`);
    this.name = 'ConfigError';
  }
}

export type Env = Readonly<Record<string, string | undefined>>;

export interface KeyCacheConfig {
  /** How long a found key set is served without asking the store again. */
  readonly ttlMs: number;
  /** How long "no key for this name" is remembered. */
  readonly negativeTtlMs: number;
  /** How long past its TTL a key set may still be served while the store is failing. */
  readonly staleIfErrorMs: number;
  /** Most key sets kept; the least recently used go first. */
  readonly maxEntries: number;
  /** Most keys kept imported (about 8 KB each); the rest are kept as JWKs and imported again when used. */
  readonly maxImportedKeys: number;
  /** A token whose kid is unknown triggers at most one re-read of that name per this interval. */
  readonly unknownKidCooldownMs: number;
  /** Most store reads in flight at once, so a registration storm cannot trip the store's throttling. */
  readonly maxConcurrentReads: number;
  /** Deadline for one store read. */
  readonly readTimeoutMs: number;
}

export interface KeyVaultConfig {
  readonly url: string;
  /** Name of a secret tried after the device and group secrets; absent = no fleet-wide key. */
  readonly fleetSecretName?: string;
  readonly disableChallengeResourceVerification: boolean;
}

export type KeySourceConfig =
  | { readonly kind: 'local'; readonly dir?: string; readonly fleetPublicKeyPem?: string }
  | { readonly kind: 'key-vault'; readonly keyVault: KeyVaultConfig };

export type ReplayConfig =
  | { readonly kind: 'off' }
  | { readonly kind: 'memory'; readonly maxEntries: number }
  | { readonly kind: 'table'; readonly connectionString: string; readonly tableName: string };

export interface WebhookConfig {
  readonly token: TokenPolicy;
  readonly keySource: KeySourceConfig;
  readonly keyCache: KeyCacheConfig;
  readonly replay: ReplayConfig;
  /** IOT_HUB_HOSTNAME: preferred when DPS linked it. */
  readonly preferredHub?: string;
  readonly twinTemplate: TwinTemplate;
}

/** Settings of the local `npm start` host only; the Functions host has its own. */
export interface LocalHostConfig {
  readonly port: number;
  /** When set, requests must carry it as `?code=` or `x-functions-key`, as a deployed function key. */
  readonly functionKey?: string;
}

function text(env: Env, name: string): string | undefined {
  const value = env[name]?.trim();
  return value === undefined || value === '' ? undefined : value;
}

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = text(env, name);
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw)) throw new ConfigError(name, `must be a whole number, got "${raw}"`);
  const value = Number(raw);
  if (value < min || value > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${value}`);
  return value;
}

function flag(env: Env, name: string): boolean {
  const raw = text(env, name)?.toLowerCase();
  if (raw === undefined || raw === 'false' || raw === '0') return false;
  if (raw === 'true' || raw === '1') return true;
  throw new ConfigError(name, `must be true or false, got "${raw}"`);
}

function algorithms(env: Env): string[] {
  const raw = text(env, 'JWT_ALGORITHMS') ?? 'ES256';
  const list = raw.split(',').map((a) => a.trim()).filter((a) => a !== '');
  if (list.length === 0) throw new ConfigError('JWT_ALGORITHMS', 'must name at least one algorithm');
  for (const alg of list) {
    if (!(SUPPORTED_ALGORITHMS as readonly string[]).includes(alg)) {
      throw new ConfigError('JWT_ALGORITHMS', `"${alg}" is not allowed; choose from ${SUPPORTED_ALGORITHMS.join(', ')}`);
    }
  }
  return [...new Set(list)];
}

function twinTemplate(env: Env): TwinTemplate {
  const raw = text(env, 'INITIAL_TWIN_TEMPLATE');
  if (raw === undefined) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new ConfigError('INITIAL_TWIN_TEMPLATE', 'is not valid JSON');
  }
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!isObject(parsed)) throw new ConfigError('INITIAL_TWIN_TEMPLATE', 'must be a JSON object');
  for (const key of Object.keys(parsed)) {
    if (key !== 'tags' && key !== 'properties') {
      throw new ConfigError('INITIAL_TWIN_TEMPLATE', `unknown member "${key}"; only "tags" and "properties" are allowed`);
    }
  }
  if (parsed.tags !== undefined && !isObject(parsed.tags)) throw new ConfigError('INITIAL_TWIN_TEMPLATE', '"tags" must be an object');
  const properties = parsed.properties;
  if (properties !== undefined) {
    if (!isObject(properties)) throw new ConfigError('INITIAL_TWIN_TEMPLATE', '"properties" must be an object');
    for (const key of Object.keys(properties)) {
      if (key !== 'desired') throw new ConfigError('INITIAL_TWIN_TEMPLATE', `"properties.${key}" is not allowed; only "desired"`);
    }
    if (properties.desired !== undefined && !isObject(properties.desired)) {
      throw new ConfigError('INITIAL_TWIN_TEMPLATE', '"properties.desired" must be an object');
    }
  }
  // Entries IoT Hub would refuse (core/twin.ts) would be dropped from every twin: refuse them here, at start.
  const sections = [['tags', parsed.tags], ['properties.desired', isObject(properties) ? properties.desired : undefined]] as const;
  for (const [where, section] of sections) {
    for (const [name, value] of Object.entries((section ?? {}) as Record<string, unknown>)) {
      const problem = twinEntryProblem(name, value);
      if (problem !== undefined) throw new ConfigError('INITIAL_TWIN_TEMPLATE', `"${where}.${name.slice(0, 64)}": ${problem} (IoT Hub twin rules)`);
    }
  }
  return parsed as TwinTemplate;
}

function keySource(env: Env): KeySourceConfig {
  const vaultUrl = text(env, 'KEY_VAULT_URL');
  const dir = text(env, 'DEVICE_KEYS_DIR');
  const fleetPem = text(env, 'DEVICE_PUBLIC_KEY');
  if (vaultUrl !== undefined) {
    if (dir !== undefined || fleetPem !== undefined) {
      throw new ConfigError('KEY_VAULT_URL', 'is set together with DEVICE_KEYS_DIR or DEVICE_PUBLIC_KEY; choose one key source (use KEY_VAULT_FLEET_SECRET for a fleet key in the vault)');
    }
    let url: URL;
    try {
      url = new URL(vaultUrl);
    } catch {
      throw new ConfigError('KEY_VAULT_URL', 'is not a URL (expected https://<vault>.vault.azure.net)');
    }
    if (url.protocol !== 'https:') throw new ConfigError('KEY_VAULT_URL', 'must be an https:// URL');
    const fleetSecretName = text(env, 'KEY_VAULT_FLEET_SECRET');
    if (fleetSecretName !== undefined && !/^[0-9a-zA-Z-]{1,127}$/.test(fleetSecretName)) {
      throw new ConfigError('KEY_VAULT_FLEET_SECRET', 'must be a Key Vault secret name (1-127 of 0-9, a-z, A-Z, -)');
    }
    return {
      kind: 'key-vault',
      keyVault: {
        url: url.origin,
        ...(fleetSecretName !== undefined && { fleetSecretName }),
        disableChallengeResourceVerification: flag(env, 'KEY_VAULT_DISABLE_CHALLENGE_RESOURCE_VERIFICATION'),
      },
    };
  }
  if (dir === undefined && fleetPem === undefined) {
    throw new ConfigError('DEVICE_KEYS_DIR', 'no key source is configured: set DEVICE_KEYS_DIR, DEVICE_PUBLIC_KEY or KEY_VAULT_URL');
  }
  // App settings often flatten a PEM's line breaks into literal "\n".
  const pem = fleetPem?.replace(/\\n/g, '\n');
  if (pem !== undefined && !pem.includes('-----BEGIN PUBLIC KEY-----')) {
    throw new ConfigError('DEVICE_PUBLIC_KEY', 'must be a PEM public key (-----BEGIN PUBLIC KEY-----)');
  }
  return { kind: 'local', ...(dir !== undefined && { dir }), ...(pem !== undefined && { fleetPublicKeyPem: pem }) };
}

function replay(env: Env): ReplayConfig {
  const kind = text(env, 'REPLAY_STORE')?.toLowerCase() ?? 'off';
  switch (kind) {
    case 'off':
      return { kind: 'off' };
    case 'memory':
      return { kind: 'memory', maxEntries: integer(env, 'REPLAY_MEMORY_MAX_ENTRIES', 1_000_000, 1, 100_000_000) };
    case 'table': {
      const connectionString = text(env, 'REPLAY_TABLE_CONNECTION') ?? text(env, 'AzureWebJobsStorage');
      if (connectionString === undefined) {
        throw new ConfigError('REPLAY_TABLE_CONNECTION', 'REPLAY_STORE=table needs REPLAY_TABLE_CONNECTION or AzureWebJobsStorage');
      }
      const tableName = text(env, 'REPLAY_TABLE_NAME') ?? 'usedtokens';
      if (!/^[A-Za-z][A-Za-z0-9]{2,62}$/.test(tableName)) {
        throw new ConfigError('REPLAY_TABLE_NAME', 'must be 3-63 letters and digits, starting with a letter');
      }
      return { kind: 'table', connectionString, tableName };
    }
    default:
      throw new ConfigError('REPLAY_STORE', `must be off, memory or table, got "${kind}"`);
  }
}

export function loadConfig(env: Env): WebhookConfig {
  const idScope = text(env, 'DPS_ID_SCOPE');
  const preferredHub = text(env, 'IOT_HUB_HOSTNAME')?.toLowerCase();
  if (preferredHub !== undefined && !isHostName(preferredHub)) {
    throw new ConfigError('IOT_HUB_HOSTNAME', 'must be a host name such as my-hub.azure-devices.net');
  }
  const replayConfig = replay(env);
  return {
    token: {
      algorithms: algorithms(env),
      maxLifetimeSeconds: integer(env, 'JWT_MAX_LIFETIME_SECONDS', 3600, 1, 366 * 24 * 3600),
      clockSkewSeconds: integer(env, 'JWT_CLOCK_SKEW_SECONDS', 60, 0, 600),
      ...(idScope !== undefined && { idScope }),
      requireJti: replayConfig.kind !== 'off',
    },
    keySource: keySource(env),
    keyCache: {
      ttlMs: integer(env, 'KEY_CACHE_TTL_SECONDS', 300, 0, 86_400) * 1000,
      negativeTtlMs: integer(env, 'KEY_CACHE_NEGATIVE_TTL_SECONDS', 30, 0, 3600) * 1000,
      staleIfErrorMs: integer(env, 'KEY_CACHE_STALE_IF_ERROR_SECONDS', 3600, 0, 7 * 86_400) * 1000,
      maxEntries: integer(env, 'KEY_CACHE_MAX_ENTRIES', 200_000, 1, 10_000_000),
      maxImportedKeys: integer(env, 'KEY_CACHE_MAX_IMPORTED_KEYS', 5_000, 1, 1_000_000),
      unknownKidCooldownMs: integer(env, 'KEY_CACHE_UNKNOWN_KID_COOLDOWN_SECONDS', 30, 0, 3600) * 1000,
      maxConcurrentReads: integer(env, 'KEY_STORE_MAX_CONCURRENT_READS', 32, 1, 1000),
      readTimeoutMs: integer(env, 'KEY_STORE_TIMEOUT_MS', 2000, 50, 30_000),
    },
    replay: replayConfig,
    ...(preferredHub !== undefined && { preferredHub }),
    twinTemplate: twinTemplate(env),
  };
}

export function loadLocalHostConfig(env: Env): LocalHostConfig {
  const functionKey = text(env, 'WEBHOOK_FUNCTION_KEY');
  return { port: integer(env, 'PORT', 7071, 0, 65_535), ...(functionKey !== undefined && { functionKey }) };
}
