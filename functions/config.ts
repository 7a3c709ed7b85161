/**
 * The one place that reads configuration. `loadConfig` takes the environment as a plain map (app settings in Azure,
 * local.settings.json locally) and returns a typed, validated config, or throws a `ConfigError` naming the setting.
 * Nothing else in the project reads `process.env` for the webhook's settings.
 */
import { createPublicKey } from 'node:crypto';
import { lstatSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { isHostName, SUPPORTED_ALGORITHMS, type TokenPolicy, type TwinTemplate } from './core/policy.js';
import { isKeyFolderFile, isWritableByOthers } from './keys/folder.js';
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
  /** Most store reads started per second (a token bucket holding one second's worth); 0 = no limit. */
  readonly maxReadsPerSecond: number;
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

/** How the replay table is reached: the managed identity (Azure), or a connection string (Azurite, local runs). */
export type ReplayTableAccess =
  | { readonly kind: 'identity'; readonly accountUrl: string }
  | {
      readonly kind: 'connection-string';
      /** Which setting it came from, for messages: REPLAY_TABLE_CONNECTION or AzureWebJobsStorage. */
      readonly setting: string;
      readonly connectionString: string;
      /** true only for an http endpoint on loopback (Azurite). */
      readonly allowInsecureConnection: boolean;
    };

export type ReplayConfig =
  | { readonly kind: 'off' }
  | {
      readonly kind: 'memory';
      readonly maxEntries: number;
      readonly maxBytes: number;
      readonly maxLiveTokensPerDevice: number;
    }
  | {
      readonly kind: 'table';
      readonly access: ReplayTableAccess;
      readonly tableName: string;
      readonly maxLiveTokensPerDevice: number;
    };

/**
 * Where the decisions' traces and metrics go (functions/telemetry): nowhere unless APPLICATIONINSIGHTS_CONNECTION_STRING
 * is set, so a local run stays silent and offline.
 */
export type TelemetryConfig =
  | { readonly kind: 'off' }
  | {
      readonly kind: 'azure-monitor';
      /** Handed to the exporter as is; never logged (it names the component's key and endpoints). */
      readonly connectionString: string;
      /** The connection string's IngestionEndpoint origin (or the exporter's default), for messages and tests. */
      readonly ingestionOrigin: string;
      /**
       * Entra ID ingestion (APPLICATIONINSIGHTS_AUTHENTICATION_STRING=Authorization=AAD): tokens for
       * https://monitor.azure.com//.default from the managed identity, the user-assigned one when clientId is set.
       * Absent: the instrumentation key alone, refused by a component with local authentication off.
       */
      readonly entra?: { readonly clientId?: string };
      /** cloud_RoleName of every item: the function app's name in Azure (WEBSITE_SITE_NAME). */
      readonly roleName: string;
      /** cloud_RoleInstance: the App Service instance (WEBSITE_INSTANCE_ID); absent = the host name. */
      readonly roleInstance?: string;
      /** How often the metrics are sent (the exporter's reader interval). */
      readonly metricIntervalMs: number;
    };

export interface WebhookConfig {
  readonly token: TokenPolicy;
  readonly keySource: KeySourceConfig;
  readonly keyCache: KeyCacheConfig;
  readonly replay: ReplayConfig;
  /** IOT_HUB_HOSTNAME: preferred when DPS linked it. */
  readonly preferredHub?: string;
  readonly twinTemplate: TwinTemplate;
  readonly telemetry: TelemetryConfig;
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

function keySource(env: Env, allowed: readonly string[]): KeySourceConfig {
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
  if (dir !== undefined) checkKeyFolder(dir);
  // App settings often flatten a PEM's line breaks into literal "\n".
  const pem = fleetPem?.replace(/\\n/g, '\n');
  if (pem !== undefined) checkFleetPublicKey(pem, allowed);
  return { kind: 'local', ...(dir !== undefined && { dir }), ...(pem !== undefined && { fleetPublicKeyPem: pem }) };
}

const LOOPBACK_HOST = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|localhost|\[::1\])$/i;
// The storage account's other services: a common slip when copying the account's endpoints.
const OTHER_STORAGE_SERVICE = /^[^.]+\.(blob|queue|file|dfs|web)\.core\./i;

/**
 * REPLAY_TABLE_ACCOUNT_URL: the table endpoint of the account, https://<account>.table.core.windows.net (or a
 * sovereign cloud's suffix). A loopback host may name the account in the path (Azurite: https://127.0.0.1:10002/
 * devstoreaccount1). No query: a SAS there would be a secret in an app setting meant to hold none.
 */
function tableAccountUrl(raw: string): string {
  const name = 'REPLAY_TABLE_ACCOUNT_URL';
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(name, 'is not a URL (expected https://<account>.table.core.windows.net)');
  }
  if (url.protocol !== 'https:') throw new ConfigError(name, 'must be an https:// URL: the managed identity\'s token is never sent in clear');
  if (url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '') {
    throw new ConfigError(name, 'must be the bare account URL, without credentials, query (a SAS) or fragment');
  }
  if (OTHER_STORAGE_SERVICE.test(url.hostname)) {
    throw new ConfigError(name, 'names another storage service; use the table endpoint, https://<account>.table.core.windows.net');
  }
  const path = url.pathname.replace(/\/+$/, '');
  if (LOOPBACK_HOST.test(url.hostname)) {
    if (!/^\/[a-z0-9]{3,24}$/.test(path)) throw new ConfigError(name, 'on a loopback host (Azurite) must name the account in the path, e.g. https://127.0.0.1:10002/devstoreaccount1');
  } else if (path !== '') {
    throw new ConfigError(name, 'must have no path (expected https://<account>.table.core.windows.net)');
  }
  return `${url.origin}${path}`;
}

/**
 * A storage connection string, checked as completely as the SDK will use it (see @azure/data-tables
 * utils/connectionString.ts): an account key form needs AccountName, a base64 AccountKey and DefaultEndpointsProtocol,
 * plus TableEndpoint or EndpointSuffix; a SAS form needs SharedAccessSignature and TableEndpoint. Plain http only to
 * a loopback emulator. Messages name the part, never the value: it holds the account key.
 */
function tableConnection(setting: string, raw: string): ReplayTableAccess {
  if (/^\s*UseDevelopmentStorage=true\s*;?\s*$/i.test(raw)) {
    // The SDK expands this to Azurite's well-known account on http://127.0.0.1:10002.
    return { kind: 'connection-string', setting, connectionString: raw, allowInsecureConnection: true };
  }
  const parts = pairs(setting, raw, 'a storage connection string (Name=value pairs separated by ";")');
  const accountName = parts.get('accountname') ?? '';
  const accountKey = parts.get('accountkey');
  const sas = parts.get('sharedaccesssignature');
  const protocol = parts.get('defaultendpointsprotocol')?.toLowerCase();
  const suffix = parts.get('endpointsuffix');
  if (accountKey !== undefined && sas !== undefined) throw new ConfigError(setting, 'has both AccountKey and SharedAccessSignature; keep one');
  if (accountKey === undefined && sas === undefined) {
    throw new ConfigError(setting, 'has neither AccountKey nor SharedAccessSignature (use REPLAY_TABLE_ACCOUNT_URL for the managed identity)');
  }
  if (accountKey !== undefined) {
    if (!/^[a-z0-9]{3,24}$/.test(accountName)) throw new ConfigError(setting, 'needs AccountName: 3-24 lower-case letters and digits');
    if (accountKey === '' || !/^[A-Za-z0-9+/]+={0,2}$/.test(accountKey) || accountKey.length % 4 !== 0) {
      throw new ConfigError(setting, 'AccountKey is not base64');
    }
    if (protocol !== 'https' && protocol !== 'http') throw new ConfigError(setting, 'needs DefaultEndpointsProtocol=https with AccountKey');
  } else if (sas === '') {
    throw new ConfigError(setting, 'SharedAccessSignature is empty');
  }
  let endpoint = parts.get('tableendpoint');
  if (endpoint === undefined || endpoint === '') {
    if (sas !== undefined) throw new ConfigError(setting, 'needs TableEndpoint with SharedAccessSignature');
    if (suffix === undefined || !isHostName(suffix)) throw new ConfigError(setting, 'needs TableEndpoint or EndpointSuffix (e.g. core.windows.net)');
    endpoint = `${protocol}://${accountName}.table.${suffix}`;
  }
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw new ConfigError(setting, 'TableEndpoint is not a URL');
  }
  if (url.search !== '' || url.username !== '' || url.password !== '') throw new ConfigError(setting, 'TableEndpoint must carry no query or credentials');
  const loopback = LOOPBACK_HOST.test(url.hostname);
  if (url.protocol === 'http:' && !loopback) throw new ConfigError(setting, 'TableEndpoint must be https:// (plain http only to a loopback emulator)');
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new ConfigError(setting, 'TableEndpoint must be an https:// URL');
  if (OTHER_STORAGE_SERVICE.test(url.hostname)) throw new ConfigError(setting, 'TableEndpoint names another storage service; use the table endpoint');
  return { kind: 'connection-string', setting, connectionString: raw, allowInsecureConnection: url.protocol === 'http:' };
}

/**
 * Whoever can write to the key folder can admit any device, so the folder must be a directory that only its owner
 * can write, and every key or metadata file in it a regular file only its owner can write. A symbolic link is
 * refused: the store never follows one (local.ts opens with O_NOFOLLOW), and a link here would point the webhook at
 * a file whose permissions this check never saw. On Windows, mode bits do not express ACLs, so only the shape is
 * checked there.
 */
function checkKeyFolder(dir: string): void {
  const fail = (message: string): never => {
    throw new ConfigError('DEVICE_KEYS_DIR', message);
  };
  const checkModes = process.platform !== 'win32';
  let folder;
  try {
    folder = statSync(dir);
  } catch (error) {
    return fail(`"${dir}" cannot be used (${(error as NodeJS.ErrnoException).code ?? 'error'}): it must be an existing folder`);
  }
  if (!folder.isDirectory()) fail(`"${dir}" is not a folder`);
  if (checkModes && isWritableByOthers(folder.mode)) {
    fail(`"${dir}" is writable by group or others (mode ${modeText(folder.mode)}); anyone who can write there can admit any device: chmod go-w it`);
  }
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (error) {
    return fail(`"${dir}" cannot be listed (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  for (const name of names.filter(isKeyFolderFile)) {
    const file = lstatSync(join(dir, name), { throwIfNoEntry: false });
    if (file === undefined) continue; // removed since the listing
    if (file.isSymbolicLink()) fail(`"${name}" is a symbolic link; key and .meta files must be regular files in the folder`);
    if (!file.isFile()) fail(`"${name}" is not a regular file`);
    if (checkModes && isWritableByOthers(file.mode)) {
      fail(`"${name}" is writable by group or others (mode ${modeText(file.mode)}): chmod go-w it`);
    }
  }
}

const modeText = (mode: number) => (mode & 0o7777).toString(8).padStart(4, '0');

/** Which allowed algorithms a public key can verify, by its type (and curve). */
function algorithmsFor(key: ReturnType<typeof createPublicKey>): string[] {
  const type = key.asymmetricKeyType;
  if (type === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    return curve === 'prime256v1' ? ['ES256'] : curve === 'secp384r1' ? ['ES384'] : curve === 'secp521r1' ? ['ES512'] : [];
  }
  if (type === 'rsa') return ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'];
  if (type === 'rsa-pss') return ['PS256', 'PS384', 'PS512'];
  if (type === 'ed25519') return ['EdDSA', 'Ed25519'];
  return [];
}

/** The fleet key is parsed in full at start, so a broken PEM stops the start instead of refusing every device. */
function checkFleetPublicKey(pem: string, allowed: readonly string[]): void {
  const fail = (message: string): never => {
    throw new ConfigError('DEVICE_PUBLIC_KEY', message);
  };
  const blocks = [...pem.matchAll(/-----BEGIN ([A-Z ]+)-----[\s\S]*?-----END \1-----/g)];
  if (blocks.length === 0) fail('must be a PEM public key (-----BEGIN PUBLIC KEY-----)');
  let usable = false;
  for (const [block, label] of blocks) {
    if (label !== 'PUBLIC KEY') fail(`holds a "${label}" PEM block; only PUBLIC KEY (SPKI) is accepted`);
    let key;
    try {
      key = createPublicKey({ key: block, format: 'pem', type: 'spki' });
    } catch {
      return fail('is not a valid PEM public key (the PUBLIC KEY block does not parse)');
    }
    if (algorithmsFor(key).some((alg) => allowed.includes(alg))) usable = true;
  }
  if (!usable) fail(`holds no key that can verify JWT_ALGORITHMS (${allowed.join(', ')})`);
}

function replay(env: Env): ReplayConfig {
  const kind = text(env, 'REPLAY_STORE')?.toLowerCase() ?? 'off';
  if (kind === 'off') return { kind: 'off' };
  // A device's own key can mint any number of jtis; each registration may hold this many live ones.
  const maxLiveTokensPerDevice = integer(env, 'REPLAY_MAX_LIVE_TOKENS_PER_DEVICE', 8, 1, 1000);
  switch (kind) {
    case 'memory':
      return {
        kind: 'memory',
        maxEntries: integer(env, 'REPLAY_MEMORY_MAX_ENTRIES', 1_000_000, 1, 100_000_000),
        maxBytes: integer(env, 'REPLAY_MEMORY_MAX_MB', 256, 1, 65_536) * 1024 * 1024,
        maxLiveTokensPerDevice,
      };
    case 'table': {
      const accountUrl = text(env, 'REPLAY_TABLE_ACCOUNT_URL');
      const connection = text(env, 'REPLAY_TABLE_CONNECTION');
      if (accountUrl !== undefined && connection !== undefined) {
        throw new ConfigError('REPLAY_TABLE_ACCOUNT_URL', 'is set together with REPLAY_TABLE_CONNECTION; choose one (the account URL uses the managed identity)');
      }
      const jobsStorage = text(env, 'AzureWebJobsStorage');
      let access: ReplayTableAccess;
      if (accountUrl !== undefined) access = { kind: 'identity', accountUrl: tableAccountUrl(accountUrl) };
      else if (connection !== undefined) access = tableConnection('REPLAY_TABLE_CONNECTION', connection);
      else if (jobsStorage !== undefined) access = tableConnection('AzureWebJobsStorage', jobsStorage);
      else {
        throw new ConfigError('REPLAY_TABLE_ACCOUNT_URL', 'REPLAY_STORE=table needs REPLAY_TABLE_ACCOUNT_URL (managed identity), or REPLAY_TABLE_CONNECTION (local, Azurite)');
      }
      const tableName = text(env, 'REPLAY_TABLE_NAME') ?? 'usedtokens';
      if (!/^[A-Za-z][A-Za-z0-9]{2,62}$/.test(tableName)) {
        throw new ConfigError('REPLAY_TABLE_NAME', 'must be 3-63 letters and digits, starting with a letter');
      }
      return { kind: 'table', access, tableName, maxLiveTokensPerDevice };
    }
    default:
      throw new ConfigError('REPLAY_STORE', `must be off, memory or table, got "${kind}"`);
  }
}

/**
 * DPS_ID_SCOPE is required: a token must name it in `aud` or `id_scope`, so a token minted for another DPS is refused.
 * DPS_ID_SCOPE_CHECK=off is for fleets whose tokens carry no audience: then the claims may be absent, but a token
 * that names a scope must still name DPS_ID_SCOPE, and with no DPS_ID_SCOPE any named scope is refused (fail closed).
 */
function audience(env: Env): Pick<TokenPolicy, 'idScope' | 'requireAudience'> {
  const check = text(env, 'DPS_ID_SCOPE_CHECK')?.toLowerCase() ?? 'on';
  if (check !== 'on' && check !== 'off') throw new ConfigError('DPS_ID_SCOPE_CHECK', `must be on or off, got "${check}"`);
  const idScope = text(env, 'DPS_ID_SCOPE');
  if (idScope === undefined && check === 'on') {
    throw new ConfigError('DPS_ID_SCOPE', 'is required: set it to the id scope of your DPS (tokens name it in "aud" or "id_scope"), or set DPS_ID_SCOPE_CHECK=off if your devices\' tokens carry no audience');
  }
  if (idScope !== undefined && !/^[0-9A-Za-z]{1,64}$/.test(idScope)) {
    throw new ConfigError('DPS_ID_SCOPE', 'must be a DPS id scope such as 0ne00000000 (letters and digits)');
  }
  return { ...(idScope !== undefined && { idScope }), requireAudience: check === 'on' };
}

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// The exporter's default when the connection string names no IngestionEndpoint (its Declarations/Constants.ts).
const DEFAULT_INGESTION_ORIGIN = 'https://dc.services.visualstudio.com';

/**
 * APPLICATIONINSIGHTS_CONNECTION_STRING, checked as the exporter reads it (its utils/connectionStringParser.ts:
 * `Key=Value` pairs split on ";", keys case-insensitive) and as the ingestion service accepts it: an
 * InstrumentationKey that is a GUID (the exporter throws on anything else), an https IngestionEndpoint (a bearer
 * token is never sent in clear; @azure/core-rest-pipeline refuses to). APPLICATIONINSIGHTS_AUTHENTICATION_STRING:
 * `Authorization=AAD`, optionally with `ClientId=<guid>` for a user-assigned identity, as the Functions host reads it
 * (Learn: azure-monitor/app/azure-ad-authentication). Messages name the part, never the value.
 */
export function loadTelemetryConfig(env: Env): TelemetryConfig {
  const raw = text(env, 'APPLICATIONINSIGHTS_CONNECTION_STRING');
  const auth = text(env, 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING');
  if (raw === undefined) {
    if (auth !== undefined) throw new ConfigError('APPLICATIONINSIGHTS_AUTHENTICATION_STRING', 'is set but APPLICATIONINSIGHTS_CONNECTION_STRING is not; set both, or neither for no telemetry');
    return { kind: 'off' };
  }
  const setting = 'APPLICATIONINSIGHTS_CONNECTION_STRING';
  const parts = pairs(setting, raw);
  const ikey = parts.get('instrumentationkey');
  if (ikey === undefined || !GUID.test(ikey)) throw new ConfigError(setting, 'needs InstrumentationKey, a GUID (copy the connection string from the Application Insights component)');
  let ingestionOrigin = DEFAULT_INGESTION_ORIGIN;
  const endpoint = parts.get('ingestionendpoint');
  if (endpoint !== undefined) {
    let url: URL;
    try {
      url = new URL(endpoint);
    } catch {
      throw new ConfigError(setting, 'IngestionEndpoint is not a URL');
    }
    if (url.protocol !== 'https:') throw new ConfigError(setting, 'IngestionEndpoint must be an https:// URL');
    if (url.username !== '' || url.password !== '' || url.search !== '') throw new ConfigError(setting, 'IngestionEndpoint must carry no credentials or query');
    ingestionOrigin = url.origin;
  }
  let entra: { clientId?: string } | undefined;
  if (auth !== undefined) {
    const authSetting = 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING';
    const a = pairs(authSetting, auth);
    if (a.get('authorization')?.toLowerCase() !== 'aad') throw new ConfigError(authSetting, 'must be Authorization=AAD, or ClientId=<client id>;Authorization=AAD for a user-assigned identity');
    for (const key of a.keys()) {
      if (key !== 'authorization' && key !== 'clientid') throw new ConfigError(authSetting, `has an unknown part "${key}"; only ClientId and Authorization`);
    }
    const clientId = a.get('clientid');
    if (clientId !== undefined && !GUID.test(clientId)) throw new ConfigError(authSetting, 'ClientId must be the client id (a GUID) of the user-assigned identity');
    entra = clientId !== undefined ? { clientId } : {};
  }
  return {
    kind: 'azure-monitor',
    connectionString: raw,
    ingestionOrigin,
    ...(entra !== undefined && { entra }),
    roleName: text(env, 'WEBSITE_SITE_NAME') ?? 'dps-jwt-webhook',
    ...(text(env, 'WEBSITE_INSTANCE_ID') !== undefined && { roleInstance: text(env, 'WEBSITE_INSTANCE_ID')! }),
    metricIntervalMs: integer(env, 'TELEMETRY_METRIC_INTERVAL_SECONDS', 60, 1, 3600) * 1000,
  };
}

/** `Key=Value;Key=Value`, keys lower-cased; a repeated key or a part without "=" is refused, naming the setting only. */
function pairs(setting: string, raw: string, what = 'Name=value pairs separated by ";"'): Map<string, string> {
  const parts = new Map<string, string>();
  for (const element of raw.split(';')) {
    const trimmed = element.trim();
    if (trimmed === '') continue;
    const eq = trimmed.indexOf('=');
    if (eq <= 0) throw new ConfigError(setting, `is not ${what}`);
    const key = trimmed.slice(0, eq).trim().toLowerCase();
    if (parts.has(key)) throw new ConfigError(setting, `names ${trimmed.slice(0, eq).trim()} twice`);
    parts.set(key, trimmed.slice(eq + 1).trim());
  }
  return parts;
}

export function loadConfig(env: Env): WebhookConfig {
  // Settings that need no I/O first, so a typo is named before the key folder is looked at.
  const allowed = algorithms(env);
  const scope = audience(env);
  const preferredHub = text(env, 'IOT_HUB_HOSTNAME')?.toLowerCase();
  if (preferredHub !== undefined && !isHostName(preferredHub)) {
    throw new ConfigError('IOT_HUB_HOSTNAME', 'must be a host name such as my-hub.azure-devices.net');
  }
  const replayConfig = replay(env);
  const source = keySource(env, allowed);
  return {
    token: {
      algorithms: allowed,
      maxLifetimeSeconds: integer(env, 'JWT_MAX_LIFETIME_SECONDS', 3600, 1, 366 * 24 * 3600),
      clockSkewSeconds: integer(env, 'JWT_CLOCK_SKEW_SECONDS', 60, 0, 600),
      ...scope,
      requireJti: replayConfig.kind !== 'off',
    },
    keySource: source,
    keyCache: {
      ttlMs: integer(env, 'KEY_CACHE_TTL_SECONDS', 300, 0, 86_400) * 1000,
      negativeTtlMs: integer(env, 'KEY_CACHE_NEGATIVE_TTL_SECONDS', 30, 0, 3600) * 1000,
      // A key disabled in the store is still served this long past its TTL while the store is down: minutes, not hours.
      staleIfErrorMs: integer(env, 'KEY_CACHE_STALE_IF_ERROR_SECONDS', 300, 0, 86_400) * 1000,
      maxEntries: integer(env, 'KEY_CACHE_MAX_ENTRIES', 200_000, 1, 10_000_000),
      maxImportedKeys: integer(env, 'KEY_CACHE_MAX_IMPORTED_KEYS', 5_000, 1, 1_000_000),
      unknownKidCooldownMs: integer(env, 'KEY_CACHE_UNKNOWN_KID_COOLDOWN_SECONDS', 30, 0, 3600) * 1000,
      maxConcurrentReads: integer(env, 'KEY_STORE_MAX_CONCURRENT_READS', 32, 1, 1000),
      // Key Vault allows 4,000 GETs per vault per 10 s, shared by every instance and client (azure-cli-facts §3): 100
      // a second per instance leaves room for several. A key folder has no such limit, so none by default.
      maxReadsPerSecond: integer(env, 'KEY_STORE_MAX_READS_PER_SECOND', source.kind === 'key-vault' ? 100 : 0, 0, 100_000),
      readTimeoutMs: integer(env, 'KEY_STORE_TIMEOUT_MS', 2000, 50, 30_000),
    },
    replay: replayConfig,
    ...(preferredHub !== undefined && { preferredHub }),
    twinTemplate: twinTemplate(env),
    telemetry: loadTelemetryConfig(env),
  };
}

export function loadLocalHostConfig(env: Env): LocalHostConfig {
  const rawKey = env.WEBHOOK_FUNCTION_KEY;
  // Set but blank is a mistake, not "no key": refusing it keeps a typo from opening the endpoint.
  if (rawKey !== undefined && rawKey !== '' && rawKey.trim() === '') {
    throw new ConfigError('WEBHOOK_FUNCTION_KEY', 'is only whitespace; set a real key, or remove the setting to run without one');
  }
  const functionKey = text(env, 'WEBHOOK_FUNCTION_KEY');
  return { port: integer(env, 'PORT', 7071, 0, 65_535), ...(functionKey !== undefined && { functionKey }) };
}
