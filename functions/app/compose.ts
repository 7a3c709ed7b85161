import { ConfigError, loadConfig, type Env, type WebhookConfig } from '../config.js';
import { REASONS, WebhookError } from '../core/reasons.js';
import { decide, type WebhookAnswer, type WebhookInput } from '../core/webhook.js';
import { createKeyCache, type KeyCache } from '../keys/cache.js';
import { createImportedKeys, type ImportedKeys } from '../keys/imported.js';
import { createLocalKeyStore } from '../keys/local.js';
import { deviceSecretName, groupSecretName } from '../keys/names.js';
import { createDeviceKeys } from '../keys/resolve.js';
import type { KeySource } from '../keys/types.js';
import { createMemoryReplayStore } from '../replay/memory.js';
import type { ReplayStore } from '../core/ports.js';
import type { TokenCredential } from '@azure/identity';

/** What an adapter calls: one decision per request. */
export interface WebhookHandler {
  handle(input: WebhookInput): Promise<WebhookAnswer>;
}

export interface Webhook extends WebhookHandler {
  readonly keyCache: KeyCache;
  readonly importedKeys: ImportedKeys;
  close(): Promise<void>;
}

export interface WebhookOverrides {
  /** A clock for tests; defaults to Date.now. */
  readonly now?: () => number;
  /** A key store to use instead of the configured one (benchmarks, tests of the cache). */
  readonly keyStore?: KeySource;
  /** The Azure credential for Key Vault and the replay table; default: one DefaultAzureCredential per webhook. */
  readonly credential?: TokenCredential;
}

/**
 * The process's one Azure credential (in Azure: the function app's managed identity), made only when a setting
 * needs it and shared by the Key Vault client and the replay table, so both use one token cache and one MSAL client.
 */
function lazyCredential(override: TokenCredential | undefined): () => Promise<TokenCredential> {
  let made: Promise<TokenCredential> | undefined;
  return () => {
    // Loaded only when configured, so the local flow never loads the Azure SDK.
    made ??= override !== undefined ? Promise.resolve(override) : import('@azure/identity').then(({ DefaultAzureCredential }) => new DefaultAzureCredential());
    return made;
  };
}

/** The configured key store and the names tried in it, device first (also `fleet explain`'s, so both look alike). */
export async function keySourceFor(config: WebhookConfig, credential: () => Promise<TokenCredential>): Promise<KeySource> {
  const source = config.keySource;
  if (source.kind === 'local') return createLocalKeyStore({ ...source, algorithms: config.token.algorithms });
  // Loaded only when configured, so the local flow never loads the Azure SDK.
  const { createKeyVaultStore } = await import('../keys/keyvault.js');
  const { fleetSecretName } = source.keyVault;
  return {
    store: createKeyVaultStore({ keyVault: source.keyVault, algorithms: config.token.algorithms, timeoutMs: config.keyCache.readTimeoutMs, credential: await credential() }),
    names: ({ registrationId, enrollmentGroupId }) => [
      deviceSecretName(registrationId),
      ...(enrollmentGroupId !== undefined ? [groupSecretName(enrollmentGroupId)] : []),
      ...(fleetSecretName !== undefined ? [fleetSecretName] : []),
    ],
  };
}

async function replayStoreFor(config: WebhookConfig, credential: () => Promise<TokenCredential>): Promise<ReplayStore | undefined> {
  const replay = config.replay;
  switch (replay.kind) {
    case 'off':
      return undefined;
    case 'memory':
      return createMemoryReplayStore(replay);
    case 'table': {
      const { createTableReplayStore } = await import('../replay/table.js');
      const { access } = replay;
      return createTableReplayStore({
        access: access.kind === 'identity' ? { kind: 'identity', accountUrl: access.accountUrl, credential: await credential() } : access,
        tableName: replay.tableName,
        maxLiveTokensPerDevice: replay.maxLiveTokensPerDevice,
      });
    }
  }
}

/**
 * The composition root: builds the key store, its cache, and the replay store once per process, and returns the
 * handler every adapter (Functions trigger, local host, tests, benchmark) calls.
 */
export async function createWebhook(config: WebhookConfig, overrides: WebhookOverrides = {}): Promise<Webhook> {
  const now = overrides.now ?? Date.now;
  const credential = lazyCredential(overrides.credential);
  const { store, names } = overrides.keyStore ?? (await naming(keySettingOf(config), () => keySourceFor(config, credential)));
  const keyCache = createKeyCache(store, config.keyCache, now);
  const importedKeys = createImportedKeys(config.keyCache.maxImportedKeys);
  const replay = await naming(replaySettingOf(config), () => replayStoreFor(config, credential));
  const deps = {
    policy: config.token,
    ...(config.preferredHub !== undefined && { preferredHub: config.preferredHub }),
    twinTemplate: config.twinTemplate,
    keys: createDeviceKeys(keyCache, names),
    importKey: importedKeys.get,
    ...(replay !== undefined && { replay }),
    now,
  };
  return {
    keyCache,
    importedKeys,
    handle: (input) => decide(input, deps),
    close: async () => {
      await replay?.close?.();
    },
  };
}

function keySettingOf(config: WebhookConfig): string {
  const source = config.keySource;
  return source.kind === 'key-vault' ? 'KEY_VAULT_URL' : source.dir !== undefined ? 'DEVICE_KEYS_DIR' : 'DEVICE_PUBLIC_KEY';
}

function replaySettingOf(config: WebhookConfig): string {
  const replay = config.replay;
  if (replay.kind !== 'table') return 'REPLAY_STORE';
  return replay.access.kind === 'identity' ? 'REPLAY_TABLE_ACCOUNT_URL' : replay.access.setting;
}

/**
 * Runs one start step; a fault in it becomes a ConfigError naming the setting behind the step. Its message is the
 * coded refusal's own (never a secret) or, for anything else, the error's class name only: an SDK's message can
 * quote a connection string.
 */
async function naming<T>(setting: string, step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    const why = error instanceof WebhookError ? error.message : error instanceof Error ? error.name : typeof error;
    throw new ConfigError(setting, `is set but cannot be used (${why})`);
  }
}

// DPS retries a 503 (10 tries over about 8 minutes); an operator's fix takes longer than a device fault's retry.
const MISCONFIGURED_RETRY_AFTER_SECONDS = '30';

/** The answer to every request while a setting cannot work: 503 webhook_misconfigured, naming the setting in the log only. */
function misconfigured(setting: string): WebhookHandler {
  const code = 'webhook_misconfigured' as const;
  const status = REASONS[code].status;
  return {
    handle: async () => ({
      status,
      headers: { 'content-type': 'application/json; charset=utf-8', 'retry-after': MISCONFIGURED_RETRY_AFTER_SECONDS },
      body: { code, message: REASONS[code].summary },
      log: { outcome: 'retry', code, status, setting, durationMs: 0 },
    }),
  };
}

/**
 * The webhook as the Functions trigger starts it: read the settings, build the stores, and never reject. A fault at
 * start (a ConfigError, a setting that parses but cannot work, a key that cannot be imported) is reported once,
 * naming the setting, and every request is then answered 503 `webhook_misconfigured` until the app restarts with the
 * setting fixed: the worker stays up (an unhandled rejection would kill it) and DPS retries rather than failing
 * every device for good.
 */
export async function startWebhook(env: Env, options: { report: (line: string) => void; overrides?: WebhookOverrides }): Promise<WebhookHandler> {
  try {
    return await createWebhook(loadConfig(env), options.overrides);
  } catch (error) {
    const fault = error instanceof ConfigError ? error : new ConfigError('(start)', `failed (${error instanceof Error ? error.name : typeof error})`);
    options.report(JSON.stringify({
      event: 'validatejwt',
      outcome: 'misconfigured',
      code: 'webhook_misconfigured',
      setting: fault.setting,
      message: `${fault.message}; every request is answered 503 webhook_misconfigured until it is fixed`,
    }));
    return misconfigured(fault.setting);
  }
}
